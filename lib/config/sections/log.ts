/** [log]: dotproxy's own log. */

import { LOG_FORMATS, LOG_LEVELS } from "../enums.ts";
import { oneOf } from "../readers.ts";
import { defineSection, type SectionValue, setting } from "../table.ts";

/** The [log] keys. */
export const LOG = defineSection("log", "log", {
  level: setting("level", oneOf(LOG_LEVELS), {
    default: "info",
    doc: "minimum level logged",
    reloadable: true,
  }),
  format: setting("format", oneOf(LOG_FORMATS), {
    default: "text",
    doc: `"text" for people, "json" for log collectors`,
    reloadable: true,
  }),
});

/** [log] settings. */
export type LogConfig = SectionValue<typeof LOG.rows>;

/** [log] defaults. */
export const DEFAULT_LOG: Readonly<LogConfig> = LOG.defaults;
