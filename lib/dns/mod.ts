/** The DNS wire codec in one import: names, message walking, and reply building. */

export * from "./wire.ts";
export * from "./message.ts";
export * from "./reply.ts";
export * from "./local_reply.ts";
export * from "./rdata_names.ts";
