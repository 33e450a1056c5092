/**
 * Quiver as a LangChain.js vector store: the package's `quiverdb/langchain` subpath.
 * Needs the optional peer dependency @langchain/core (npm install @langchain/core).
 *
 *   import { QuiverVectorStore } from "quiverdb/langchain";
 *   const store = await QuiverVectorStore.fromTexts(texts, metadatas, embeddings, { path: "docs.qv", indexes: { lang: "keyword" } });
 *   const hits = await store.similaritySearch("query", 4, { lang: "en" });
 */
export { PAGE_CONTENT_KEY, type QuiverFilter, type QuiverStoreArgs, QuiverVectorStore } from "./src/langchain.ts";
