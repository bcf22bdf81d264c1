/**
 * Mnemonics for RR types and rcodes, shared by the metrics (a small fixed label set, so series
 * stay bounded) and the query log (every registered name, RFC 3597 `TYPEnnn` for the rest).
 */

/** Registered RR type mnemonics (IANA "Resource Record (RR) TYPEs"), for the query log. */
const TYPE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries({
    A: 1,
    NS: 2,
    MD: 3,
    MF: 4,
    CNAME: 5,
    SOA: 6,
    MB: 7,
    MG: 8,
    MR: 9,
    NULL: 10,
    WKS: 11,
    PTR: 12,
    HINFO: 13,
    MINFO: 14,
    MX: 15,
    TXT: 16,
    RP: 17,
    AFSDB: 18,
    X25: 19,
    ISDN: 20,
    RT: 21,
    NSAP: 22,
    "NSAP-PTR": 23,
    SIG: 24,
    KEY: 25,
    PX: 26,
    GPOS: 27,
    AAAA: 28,
    LOC: 29,
    NXT: 30,
    SRV: 33,
    NAPTR: 35,
    KX: 36,
    CERT: 37,
    A6: 38,
    DNAME: 39,
    OPT: 41,
    APL: 42,
    DS: 43,
    SSHFP: 44,
    IPSECKEY: 45,
    RRSIG: 46,
    NSEC: 47,
    DNSKEY: 48,
    DHCID: 49,
    NSEC3: 50,
    NSEC3PARAM: 51,
    TLSA: 52,
    SMIMEA: 53,
    HIP: 55,
    CDS: 59,
    CDNSKEY: 60,
    OPENPGPKEY: 61,
    CSYNC: 62,
    ZONEMD: 63,
    SVCB: 64,
    HTTPS: 65,
    SPF: 99,
    NID: 104,
    L32: 105,
    L64: 106,
    LP: 107,
    EUI48: 108,
    EUI64: 109,
    TKEY: 249,
    TSIG: 250,
    IXFR: 251,
    AXFR: 252,
    MAILB: 253,
    MAILA: 254,
    ANY: 255,
    URI: 256,
    CAA: 257,
    AVC: 258,
    DOA: 259,
    AMTRELAY: 260,
    RESINFO: 261,
    TA: 32768,
    DLV: 32769,
  }).map(([name, value]) => [value, name]),
);

/** Registered rcode mnemonics (IANA "DNS RCODEs"); 16 is BADVERS in EDNS context. */
const RCODE_NAMES: ReadonlyMap<number, string> = new Map(
  Object.entries({
    NOERROR: 0,
    FORMERR: 1,
    SERVFAIL: 2,
    NXDOMAIN: 3,
    NOTIMP: 4,
    REFUSED: 5,
    YXDOMAIN: 6,
    YXRRSET: 7,
    NXRRSET: 8,
    NOTAUTH: 9,
    NOTZONE: 10,
    DSOTYPENI: 11,
    BADVERS: 16,
    BADKEY: 17,
    BADTIME: 18,
    BADMODE: 19,
    BADNAME: 20,
    BADALG: 21,
    BADTRUNC: 22,
    BADCOOKIE: 23,
  }).map(([name, value]) => [value, name]),
);

/** Presentation name of an RR type: its mnemonic, else `TYPEnnn` (RFC 3597 §5). */
export function typeName(qtype: number): string {
  return TYPE_NAMES.get(qtype) ?? `TYPE${qtype}`;
}

/** Presentation name of an rcode: its mnemonic, else `RCODEnnn`. */
export function rcodeName(rcode: number): string {
  return RCODE_NAMES.get(rcode) ?? `RCODE${rcode}`;
}

/**
 * The qtype label values of the metrics, in index order; anything else is "other" (last), so a
 * client sending random types cannot create unbounded series.
 */
export const QTYPE_LABELS = [
  "A",
  "NS",
  "CNAME",
  "SOA",
  "PTR",
  "MX",
  "TXT",
  "AAAA",
  "SRV",
  "NAPTR",
  "DS",
  "RRSIG",
  "DNSKEY",
  "SVCB",
  "HTTPS",
  "CAA",
  "ANY",
  "other",
] as const;

const OTHER_QTYPE = QTYPE_LABELS.length - 1;
const CAA_INDEX = QTYPE_LABELS.indexOf("CAA");
/** Types below 256 → label index; one typed-array load on the hot path. */
const QTYPE_INDEX = new Uint8Array(256).fill(OTHER_QTYPE);
for (let i = 0; i < OTHER_QTYPE; i++) {
  const code = [...TYPE_NAMES].find(([, name]) => name === QTYPE_LABELS[i])![0];
  if (code < 256) QTYPE_INDEX[code] = i;
}

/** Index into QTYPE_LABELS for a qtype (common types by name, the rest "other"). */
export function qtypeIndex(qtype: number): number {
  if (qtype >= 0 && qtype < 256) return QTYPE_INDEX[qtype];
  return qtype === 257 ? CAA_INDEX : OTHER_QTYPE;
}

/** The rcode label values of the metrics, in index order; "other" (last) for the rest. */
export const RCODE_LABELS = [
  "NOERROR",
  "FORMERR",
  "SERVFAIL",
  "NXDOMAIN",
  "NOTIMP",
  "REFUSED",
  "YXDOMAIN",
  "YXRRSET",
  "NXRRSET",
  "NOTAUTH",
  "NOTZONE",
  "BADVERS",
  "other",
] as const;

const OTHER_RCODE = RCODE_LABELS.length - 1;
const BADVERS_INDEX = RCODE_LABELS.indexOf("BADVERS");

/** Index into RCODE_LABELS for a (possibly extended) rcode. */
export function rcodeIndex(rcode: number): number {
  if (rcode >= 0 && rcode <= 10) return rcode | 0;
  return rcode === 16 ? BADVERS_INDEX : OTHER_RCODE;
}
