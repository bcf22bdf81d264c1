/** The response cache and request coalescing in one import, for the pipeline. */

export * from "./cache.ts";
export * from "./coalesce.ts";
