// Real npm clients against a running rerankd HTTP data plane (run by tests/npm_clients_test.py).
// Usage: node clients.mjs BASE_URL   (e.g. http://127.0.0.1:8080)
// Every check compares what the client returns with the server's own answer over plain fetch, so
// a client that drops, reorders or renames fields fails. Exits non-zero on the first failure.
import assert from "node:assert/strict";
import { CohereClient, CohereClientV2 } from "cohere-ai";
import { CohereRerank } from "@langchain/cohere";
import { Document } from "@langchain/core/documents";

const base = process.argv[2];
assert.ok(base, "usage: node clients.mjs BASE_URL");
const token = "any-token"; // the server under test has no bearer tokens: it is ignored

const query = "How many people live in Berlin?";
const documents = [
  "Berlin had a population of 3,520,031 registered inhabitants.",
  "Berlin is well known for its museums.",
  "Paris is the capital of France.",
  "The population of Berlin grew in the 1990s.",
  "Bananas are yellow.",
];

async function post(path, body) {
  const r = await fetch(base + path, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const json = await r.json();
  assert.equal(r.status, 200, `${path}: ${JSON.stringify(json)}`);
  return { json, headers: r.headers };
}

function assertSorted(scores, what) {
  for (let i = 1; i < scores.length; i++) {
    assert.ok(scores[i - 1] >= scores[i], `${what}: not sorted by score: ${scores}`);
  }
}

const close = (a, b) => Math.abs(a - b) < 1e-5;
const done = [];

// The reference: every document ranked by the server, over plain fetch.
const reference = (await post("/v2/rerank", { model: "rerank-v3.5", query, documents })).json;
assert.equal(reference.results.length, documents.length);
const order = reference.results.map((r) => r.index);
const scoreOf = new Map(reference.results.map((r) => [r.index, r.relevance_score]));
assertSorted(reference.results.map((r) => r.relevance_score), "reference");

// 1. Cohere SDK v2: CohereClientV2 with environment = the server's base URL.
{
  const v2 = new CohereClientV2({ token, environment: base });
  const res = await v2.rerank({ model: "rerank-v3.5", query, documents, topN: 3 });
  assert.deepEqual(res.results.map((r) => r.index), order.slice(0, 3));
  for (const r of res.results) {
    assert.ok(close(r.relevanceScore, scoreOf.get(r.index)), `v2 score of ${r.index}`);
    assert.ok(r.relevanceScore >= 0 && r.relevanceScore <= 1);
  }
  assert.equal(res.meta.apiVersion.version, "2");
  done.push("cohere-ai CohereClientV2.rerank");
}

// 2. Cohere SDK v1: CohereClient posts to /v1/rerank; returnDocuments echoes the texts.
{
  const v1 = new CohereClient({ token, environment: base });
  const res = await v1.rerank({ query, documents, topN: 2, returnDocuments: true });
  assert.deepEqual(res.results.map((r) => r.index), order.slice(0, 2));
  for (const r of res.results) assert.equal(r.document.text, documents[r.index]);
  const bare = await v1.rerank({ query, documents: documents.map((text) => ({ text })) });
  assert.deepEqual(bare.results.map((r) => r.index), order);
  assert.equal(bare.results[0].document, undefined, "v1 return_documents defaults to false");
  done.push("cohere-ai CohereClient.rerank (v1, returnDocuments)");
}

// 3. LangChain JS: CohereRerank through a CohereClient pointed at rerankd.
{
  const reranker = new CohereRerank({
    client: new CohereClient({ token, environment: base }),
    model: "rerank-v3.5",
    topN: 2,
  });
  const docs = documents.map((text, i) => new Document({ pageContent: text, metadata: { i } }));
  const compressed = await reranker.compressDocuments(docs, query);
  assert.deepEqual(compressed.map((d) => d.metadata.i), order.slice(0, 2));
  for (const d of compressed) {
    assert.ok(close(d.metadata.relevanceScore, scoreOf.get(d.metadata.i)));
  }
  const ranked = await reranker.rerank(documents, query, { topN: 4 });
  assert.deepEqual(ranked.map((r) => r.index), order.slice(0, 4));
  done.push("@langchain/cohere CohereRerank.compressDocuments + rerank");
}

// 4. TEI with Node's fetch: a bare array sorted by score; raw_scores returns logits.
{
  const { json, headers } = await post("/rerank", { query, texts: documents, return_text: true });
  assert.ok(Array.isArray(json));
  assert.deepEqual(json.map((r) => r.index), order);
  for (const r of json) {
    assert.ok(close(r.score, scoreOf.get(r.index)));
    assert.equal(r.text, documents[r.index]);
  }
  for (const h of ["x-request-id", "x-inference-time", "x-queue-time", "x-total-time"]) {
    assert.ok(headers.get(h) !== null, `TEI response header ${h}`);
  }
  const raw = (await post("/rerank", { query, texts: documents, raw_scores: true })).json;
  for (const r of raw) {
    const sigmoid = 1 / (1 + Math.exp(-r.score));
    assert.ok(close(sigmoid, scoreOf.get(r.index)), `raw score of ${r.index} is the logit`);
  }
  done.push("TEI /rerank with fetch");
}

console.log(JSON.stringify({ ok: true, checks: done }));
