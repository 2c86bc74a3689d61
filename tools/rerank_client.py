#!/usr/bin/python3
"""A minimal Python client for rerankd, generated from the published proto at run time.

Needs Debian's python3-grpcio and python3-grpc-tools (installed by deploy/install_deps.sh).

  /usr/bin/python3 tools/rerank_client.py --query "How many people live in Berlin?" \
      --doc "Berlin had a population of 3,520,031 registered inhabitants." \
      --doc "Berlin is well known for its museums." [--target 127.0.0.1:50051] [--top-n 5]

Without --doc it reranks a small built-in example. Prints the ranked results as JSON.
"""
import argparse
import json
import os
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EXAMPLE_QUERY = "How many people live in Berlin?"
EXAMPLE_DOCS = [
    "Berlin is well known for its museums.",
    "Berlin had a population of 3,520,031 registered inhabitants in an area of 891.82 square kilometers.",
    "Paris is the capital and most populous city of France.",
    "The population of Berlin grew rapidly in the 19th century.",
    "Bananas are rich in potassium.",
    "Germany's capital has about 3.7 million residents.",
    "Munich is the capital of Bavaria.",
]


def load_stubs():
    from grpc_tools import protoc
    out = tempfile.mkdtemp(prefix="rerank_stubs_")
    proto_dir = os.path.join(ROOT, "proto")
    rc = protoc.main(["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
                      os.path.join(proto_dir, "rerank", "v1", "reranker.proto")])
    if rc != 0:
        sys.exit("rerank_client: protoc failed")
    sys.path.insert(0, out)
    from rerank.v1 import reranker_pb2, reranker_pb2_grpc
    return reranker_pb2, reranker_pb2_grpc


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--target", default=os.environ.get("RERANKER_GRPC_TARGET", "127.0.0.1:50051"))
    p.add_argument("--query", default=EXAMPLE_QUERY)
    p.add_argument("--doc", action="append", help="a candidate passage (repeat)")
    p.add_argument("--top-n", type=int, default=0, help="0 = server default (5)")
    p.add_argument("--client-id", default="rerank_client.py")
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args()
    import grpc
    pb, pb_grpc = load_stubs()
    docs = args.doc or EXAMPLE_DOCS
    req = pb.RerankRequest(query=args.query, top_n=args.top_n, client_id=args.client_id,
                           return_documents=True,
                           documents=[pb.Document(id=f"doc{i}", text=t) for i, t in enumerate(docs)])
    with grpc.insecure_channel(args.target) as channel:
        try:
            resp = pb_grpc.RerankerStub(channel).Rerank(req, timeout=args.timeout)
        except grpc.RpcError as e:
            sys.exit(f"rerank_client: {e.code().name}: {e.details()}")
    print(json.dumps({
        "model": resp.model_name, "version": resp.model_version, "reranked": resp.reranked,
        "request_id": resp.request_id,
        "results": [{"rank": k + 1, "index": r.index, "id": r.id, "score": round(r.score, 6),
                     "text": r.text} for k, r in enumerate(resp.results)],
    }, indent=2))


if __name__ == "__main__":
    main()
