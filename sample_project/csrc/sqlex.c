/*
 * sqlex: a SQL tokenizer whose scanner is generated at start-up.
 *
 * Init parses the rule table below (one regular expression per token kind, plus a list of
 * case-insensitive keywords), builds a Thompson NFA, and turns it into a DFA over byte
 * equivalence classes by subset construction. That is the work a pre-initializer saves:
 * after wizening, the DFA is already in linear memory and `sqlex_tokenize` can run at once.
 *
 * Exports: `wizer-initialize` (the init), `sqlex_input` (the input buffer), `sqlex_tokenize`,
 * `sqlex_tokens`, `sqlex_kind_name`, `sqlex_stats`. No imports are needed.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Token kinds, in priority order: on equal match length the earlier rule wins. */
static const char RULES[] =
    "space    [ \\t\\r\\n\\f]+\n"
    "comment  --[^\\n]*\n"
    "comment  /\\*([^*]|\\*+[^*/])*\\*+/\n"
    "keyword  @\n" /* the KEYWORDS list, matched case-insensitively */
    "ident    [A-Za-z_\\x80-\\xff][A-Za-z0-9_$\\x80-\\xff]*\n"
    "ident    \"([^\"]|\"\")*\"\n"
    "ident    `[^`]*`\n"
    "number   [0-9]+(\\.[0-9]*)?([eE][-+]?[0-9]+)?\n"
    "number   \\.[0-9]+([eE][-+]?[0-9]+)?\n"
    "number   0[xX][0-9A-Fa-f]+\n"
    "string   [xXbBnN]?'([^']|'')*'\n"
    "param    \\?[0-9]*|[:@$][A-Za-z_][A-Za-z0-9_]*\n"
    "operator <>|<=|>=|!=|==|<<|>>|\\|\\||->>?|::|[-+*/%<>=~!&|^]\n"
    "punct    [(),;.\\[\\]{}]\n";

static const char KEYWORDS[] =
    "ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND ANY ARRAY AS ASC ASYMMETRIC AT ATTACH "
    "AUTHORIZATION AUTOINCREMENT BEFORE BEGIN BETWEEN BIGINT BINARY BLOB BOOLEAN BOTH BY CALL "
    "CASCADE CASE CAST CHAR CHARACTER CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE "
    "CROSS CUBE CURRENT CURRENT_DATE CURRENT_ROLE CURRENT_TIME CURRENT_TIMESTAMP CURRENT_USER "
    "CURSOR DATABASE DATE DAY DEALLOCATE DEC DECIMAL DECLARE DEFAULT DEFERRABLE DEFERRED DELETE "
    "DESC DESCRIBE DETACH DISTINCT DO DOUBLE DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE "
    "EXECUTE EXISTS EXPLAIN FALSE FETCH FILTER FIRST FLOAT FOLLOWING FOR FOREIGN FROM FULL "
    "FUNCTION GENERATED GLOB GRANT GROUP GROUPING GROUPS HAVING HOUR IF IGNORE ILIKE IMMEDIATE "
    "IN INDEX INDEXED INITIALLY INNER INSERT INSTEAD INT INTEGER INTERSECT INTERVAL INTO IS "
    "ISNULL JOIN KEY LAST LATERAL LEADING LEFT LIKE LIMIT LOCAL LOCALTIME LOCALTIMESTAMP MATCH "
    "MATERIALIZED MERGE MINUTE MONTH NATURAL NO NOT NOTHING NOTNULL NULL NULLS NUMERIC OF "
    "OFFSET ON ONLY OR ORDER OTHERS OUTER OVER OVERLAPS PARTITION PLAN PRAGMA PRECEDING "
    "PRECISION PRIMARY PROCEDURE RAISE RANGE REAL RECURSIVE REFERENCES REGEXP REINDEX RELEASE "
    "RENAME REPLACE RESTRICT RETURNING RETURNS REVOKE RIGHT ROLLBACK ROLLUP ROW ROWS SAVEPOINT "
    "SCHEMA SECOND SELECT SESSION_USER SET SETS SIMILAR SMALLINT SOME STORED STRICT SYMMETRIC "
    "TABLE TEMP TEMPORARY TEXT THEN TIES TIME TIMESTAMP TO TRAILING TRANSACTION TRIGGER TRUE "
    "TRUNCATE UNBOUNDED UNION UNIQUE UNKNOWN UPDATE USER USING VACUUM VALUES VARCHAR VARYING "
    "VIEW VIRTUAL WHEN WHERE WINDOW WITH WITHIN WITHOUT YEAR ZONE";

enum { MAX_RULES = 32, MAX_KINDS = 16, INPUT_CAP = 1 << 16, MAX_TOKENS = INPUT_CAP };
enum { N_SET, N_EPS, N_MATCH };

typedef struct {
  uint8_t type;
  uint8_t rule;  /* N_MATCH: the rule it accepts */
  uint16_t set;  /* N_SET: index into sets */
  int32_t out, out1;
} NState;

typedef struct {
  uint32_t bits[8];
} ByteSet;

typedef struct {
  int32_t start, end;
} Frag;

/* ---- what survives init (and so lands in the snapshot) ---- */
static char kind_names[MAX_KINDS][12];
static uint8_t rule_kind[MAX_RULES];
static int n_kinds;
static uint8_t byte_class[256];
static int n_classes;
static int n_dstates;
static uint16_t *dfa;       /* n_dstates * n_classes transitions; state 0 is dead */
static int8_t *dfa_accept;  /* rule accepted in each state, or -1 */
static int ready;

static char input[INPUT_CAP];
static uint32_t tokens[MAX_TOKENS * 3]; /* (kind, start, length) triples */

/* ---- scratch used only while building ---- */
static NState *nfa;
static int n_nfa, cap_nfa;
static ByteSet *sets;
static int n_sets, cap_sets;
static const char *pat;

static void *grow(void *p, int *cap, int need, size_t size) {
  if (need <= *cap) return p;
  while (*cap < need) *cap = *cap ? *cap * 2 : 256;
  p = realloc(p, (size_t)*cap * size);
  if (!p) abort();
  return p;
}

static int add_state(int type, int set, int out, int out1) {
  nfa = grow(nfa, &cap_nfa, n_nfa + 1, sizeof *nfa);
  nfa[n_nfa] = (NState){(uint8_t)type, 0, (uint16_t)set, out, out1};
  return n_nfa++;
}

static int add_set(const ByteSet *s) {
  for (int i = 0; i < n_sets; i++)
    if (!memcmp(&sets[i], s, sizeof *s)) return i;
  sets = grow(sets, &cap_sets, n_sets + 1, sizeof *sets);
  sets[n_sets] = *s;
  return n_sets++;
}

static void set_add(ByteSet *s, int c) { s->bits[c >> 5] |= 1u << (c & 31); }
static int set_has(const ByteSet *s, int c) { return (s->bits[c >> 5] >> (c & 31)) & 1; }

static Frag frag_set(const ByteSet *s) {
  int end = add_state(N_EPS, 0, -1, -1);
  return (Frag){add_state(N_SET, add_set(s), end, -1), end};
}

static Frag frag_empty(void) {
  int s = add_state(N_EPS, 0, -1, -1);
  return (Frag){s, s};
}

static Frag frag_cat(Frag a, Frag b) {
  nfa[a.end].out = b.start;
  return (Frag){a.start, b.end};
}

static int hexval(int c) {
  return c <= '9' ? c - '0' : (c | 32) - 'a' + 10;
}

/* One possibly escaped byte of a pattern. */
static int pat_byte(void) {
  int c = (unsigned char)*pat++;
  if (c != '\\') return c;
  c = (unsigned char)*pat++;
  switch (c) {
    case 'n': return '\n';
    case 't': return '\t';
    case 'r': return '\r';
    case 'f': return '\f';
    case 'x': {
      int v = hexval(pat[0]) * 16 + hexval(pat[1]);
      pat += 2;
      return v;
    }
    default: return c;
  }
}

static Frag parse_class(void) {
  ByteSet s = {{0}};
  int negate = *pat == '^';
  if (negate) pat++;
  while (*pat != ']') {
    int lo = pat_byte(), hi = lo;
    if (pat[0] == '-' && pat[1] != ']') {
      pat++;
      hi = pat_byte();
    }
    for (int c = lo; c <= hi; c++) set_add(&s, c);
  }
  pat++;
  if (negate)
    for (int i = 0; i < 8; i++) s.bits[i] = ~s.bits[i];
  return frag_set(&s);
}

static Frag parse_alt(void);

static Frag parse_atom(void) {
  ByteSet s = {{0}};
  if (*pat == '(') {
    pat++;
    Frag f = parse_alt();
    pat++; /* ')' */
    return f;
  }
  if (*pat == '[') {
    pat++;
    return parse_class();
  }
  set_add(&s, pat_byte());
  return frag_set(&s);
}

static Frag parse_repeat(void) {
  Frag f = parse_atom();
  while (*pat == '*' || *pat == '+' || *pat == '?') {
    int end = add_state(N_EPS, 0, -1, -1);
    char op = *pat++;
    if (op == '?') {
      nfa[f.end].out = end;
      f = (Frag){add_state(N_EPS, 0, f.start, end), end};
    } else {
      nfa[f.end].out = f.start;
      nfa[f.end].out1 = end;
      f = (Frag){op == '*' ? add_state(N_EPS, 0, f.start, end) : f.start, end};
    }
  }
  return f;
}

static Frag parse_cat(void) {
  Frag f = frag_empty();
  while (*pat && *pat != '|' && *pat != ')' && *pat != '\n') f = frag_cat(f, parse_repeat());
  return f;
}

static Frag parse_alt(void) {
  Frag f = parse_cat();
  while (*pat == '|') {
    pat++;
    Frag g = parse_cat();
    int end = add_state(N_EPS, 0, -1, -1);
    nfa[f.end].out = end;
    nfa[g.end].out = end;
    f = (Frag){add_state(N_EPS, 0, f.start, g.start), end};
  }
  return f;
}

/* One case-insensitive keyword as a chain of byte sets. */
static Frag keyword(const char *w, int n) {
  Frag f = frag_empty();
  for (int i = 0; i < n; i++) {
    ByteSet s = {{0}};
    set_add(&s, w[i]);
    if (w[i] >= 'A' && w[i] <= 'Z') set_add(&s, w[i] | 32);
    f = frag_cat(f, frag_set(&s));
  }
  return f;
}

static Frag keywords(void) {
  int start = add_state(N_EPS, 0, -1, -1), tail = start;
  int end = add_state(N_EPS, 0, -1, -1);
  for (const char *w = KEYWORDS; *w;) {
    int n = 0;
    while (w[n] && w[n] != ' ') n++;
    Frag k = keyword(w, n);
    nfa[k.end].out = end;
    int next = add_state(N_EPS, 0, -1, -1);
    nfa[tail].out = k.start;
    nfa[tail].out1 = next;
    tail = next;
    w += n + (w[n] == ' ');
  }
  return (Frag){start, end};
}

static int kind_of(const char *name, int n) {
  for (int k = 0; k < n_kinds; k++)
    if ((int)strlen(kind_names[k]) == n && !memcmp(kind_names[k], name, n)) return k;
  memcpy(kind_names[n_kinds], name, n);
  return n_kinds++;
}

/* Parse RULES; returns the number of rules and fills `starts`. */
static int parse_rules(int *starts) {
  int n = 0;
  for (pat = RULES; *pat; pat++) { /* the final pat++ skips '\n' */
    const char *name = pat;
    while (*pat != ' ') pat++;
    rule_kind[n] = (uint8_t)kind_of(name, (int)(pat - name));
    while (*pat == ' ') pat++;
    Frag f;
    if (*pat == '@') {
      pat++;
      f = keywords();
    } else {
      f = parse_alt();
    }
    nfa[f.end].type = N_MATCH;
    nfa[f.end].rule = (uint8_t)n;
    starts[n++] = f.start;
  }
  return n;
}

/* Bytes that every byte set treats alike share a class, shrinking the DFA's rows. */
static void make_byte_classes(void) {
  uint8_t remap[256 * 2];
  memset(byte_class, 0, sizeof byte_class);
  n_classes = 1;
  for (int s = 0; s < n_sets; s++) {
    int n = 0;
    memset(remap, 0xff, sizeof remap);
    for (int c = 0; c < 256; c++) {
      int key = byte_class[c] * 2 + set_has(&sets[s], c);
      if (remap[key] == 0xff) remap[key] = (uint8_t)n++;
      byte_class[c] = remap[key];
    }
    n_classes = n;
  }
}

/* ---- subset construction ---- */
static int words;           /* uint64 words per NFA state set */
static uint64_t *dsets;     /* the NFA set of each DFA state */
static int cap_dstates;
static int32_t *table;      /* hash table of DFA states, -1 = free */
static int table_size;
static int32_t *stack;

static uint64_t *dset(int d) { return dsets + (size_t)d * words; }

static void closure(uint64_t *set) {
  int top = 0;
  for (int w = 0; w < words; w++)
    for (uint64_t b = set[w]; b; b &= b - 1) stack[top++] = w * 64 + __builtin_ctzll(b);
  while (top) {
    NState *s = &nfa[stack[--top]];
    if (s->type != N_EPS) continue;
    int outs[2] = {s->out, s->out1};
    for (int i = 0; i < 2; i++) {
      int t = outs[i];
      if (t >= 0 && !(set[t >> 6] >> (t & 63) & 1)) {
        set[t >> 6] |= 1ull << (t & 63);
        stack[top++] = t;
      }
    }
  }
}

static uint32_t set_hash(const uint64_t *set) {
  uint64_t h = 1469598103934665603ull;
  for (int w = 0; w < words; w++) h = (h ^ set[w]) * 1099511628211ull;
  return (uint32_t)(h ^ h >> 32);
}

static void rehash(void) {
  table_size = table_size ? table_size * 2 : 1024;
  free(table);
  table = malloc((size_t)table_size * sizeof *table);
  memset(table, 0xff, (size_t)table_size * sizeof *table);
  for (int d = 1; d < n_dstates; d++) {
    uint32_t i = set_hash(dset(d)) & (table_size - 1);
    while (table[i] >= 0) i = (i + 1) & (table_size - 1);
    table[i] = d;
  }
}

/* The DFA state for `set` (already closed), adding it if new; 0 for the empty set. */
static int intern(const uint64_t *set) {
  int empty = 1;
  for (int w = 0; w < words && empty; w++) empty = !set[w];
  if (empty) return 0;
  uint32_t i = set_hash(set) & (table_size - 1);
  for (; table[i] >= 0; i = (i + 1) & (table_size - 1))
    if (!memcmp(dset(table[i]), set, words * sizeof *set)) return table[i];
  dsets = grow(dsets, &cap_dstates, n_dstates + 1, words * sizeof *set);
  memcpy(dset(n_dstates), set, words * sizeof *set);
  table[i] = n_dstates;
  if (2 * ++n_dstates > table_size) rehash();
  return n_dstates - 1;
}

static void build_dfa(const int *starts, int n_rules) {
  words = (n_nfa + 63) / 64;
  stack = malloc(n_nfa * sizeof *stack);
  uint64_t *next = malloc(words * sizeof *next);
  int rep[256]; /* one byte per class */
  for (int c = 255; c >= 0; c--) rep[byte_class[c]] = c;

  n_dstates = 1; /* state 0: dead */
  dsets = grow(dsets, &cap_dstates, 1, words * sizeof *next);
  memset(dsets, 0, words * sizeof *next);
  rehash();
  memset(next, 0, words * sizeof *next);
  for (int r = 0; r < n_rules; r++) next[starts[r] >> 6] |= 1ull << (starts[r] & 63);
  closure(next);
  intern(next);

  int cap_rows = 0;
  uint16_t *rows = NULL;
  for (int d = 1; d < n_dstates; d++) {
    rows = grow(rows, &cap_rows, n_dstates * n_classes, sizeof *rows);
    for (int k = 0; k < n_classes; k++) {
      memset(next, 0, words * sizeof *next);
      const uint64_t *cur = dset(d);
      for (int w = 0; w < words; w++)
        for (uint64_t b = cur[w]; b; b &= b - 1) {
          NState *s = &nfa[w * 64 + __builtin_ctzll(b)];
          if (s->type == N_SET && set_has(&sets[s->set], rep[k]))
            next[s->out >> 6] |= 1ull << (s->out & 63);
        }
      closure(next);
      rows[d * n_classes + k] = (uint16_t)intern(next);
    }
  }
  memset(rows, 0, n_classes * sizeof *rows); /* the dead state stays dead */

  /* Keep the result compact and the scratch zeroed, so the snapshot carries only the DFA. */
  dfa = malloc((size_t)n_dstates * n_classes * sizeof *dfa);
  memcpy(dfa, rows, (size_t)n_dstates * n_classes * sizeof *dfa);
  dfa_accept = malloc(n_dstates);
  for (int d = 0; d < n_dstates; d++) {
    int best = -1;
    for (int w = 0; w < words; w++)
      for (uint64_t b = dset(d)[w]; b; b &= b - 1) {
        NState *s = &nfa[w * 64 + __builtin_ctzll(b)];
        if (s->type == N_MATCH && (best < 0 || s->rule < best)) best = s->rule;
      }
    dfa_accept[d] = (int8_t)best;
  }
  memset(rows, 0, (size_t)cap_rows * sizeof *rows);
  free(rows);
  memset(next, 0, words * sizeof *next);
  free(next);
}

static void release_scratch(void) {
  memset(dsets, 0, (size_t)cap_dstates * words * sizeof *dsets);
  memset(table, 0, (size_t)table_size * sizeof *table);
  memset(stack, 0, n_nfa * sizeof *stack);
  memset(nfa, 0, (size_t)cap_nfa * sizeof *nfa);
  memset(sets, 0, (size_t)cap_sets * sizeof *sets);
  free(dsets);
  free(table);
  free(stack);
  free(nfa);
  free(sets);
  dsets = NULL, table = NULL, stack = NULL, nfa = NULL, sets = NULL;
}

void __wasm_call_ctors(void);

__attribute__((export_name("wizer-initialize"))) void sqlex_init(void) {
  int starts[MAX_RULES];
  __wasm_call_ctors();
  int n_rules = parse_rules(starts);
  make_byte_classes();
  build_dfa(starts, n_rules);
  release_scratch();
  ready = 1;
}

__attribute__((export_name("sqlex_input"))) char *sqlex_input(void) { return input; }

__attribute__((export_name("sqlex_tokens"))) uint32_t *sqlex_tokens(void) { return tokens; }

__attribute__((export_name("sqlex_kind_name"))) const char *sqlex_kind_name(int k) {
  return k >= 0 && k < n_kinds ? kind_names[k] : "error";
}

/* Number of DFA states (negative until init has run). */
__attribute__((export_name("sqlex_stats"))) int sqlex_stats(void) {
  return ready ? n_dstates : -1;
}

/* Longest-match tokenization of input[0..len); returns the token count, -1 before init.
 * A byte no rule matches becomes a one-byte token of kind n_kinds ("error"). */
__attribute__((export_name("sqlex_tokenize"))) int sqlex_tokenize(int len) {
  if (!ready || len < 0 || len > INPUT_CAP) return -1;
  int n = 0;
  for (int pos = 0; pos < len;) {
    int state = 1, best_len = 0, best_rule = -1;
    for (int i = pos; i < len; i++) {
      state = dfa[state * n_classes + byte_class[(unsigned char)input[i]]];
      if (!state) break;
      if (dfa_accept[state] >= 0) {
        best_len = i - pos + 1;
        best_rule = dfa_accept[state];
      }
    }
    int kind = best_rule >= 0 ? rule_kind[best_rule] : n_kinds;
    if (best_len == 0) best_len = 1;
    tokens[n * 3] = (uint32_t)kind;
    tokens[n * 3 + 1] = (uint32_t)pos;
    tokens[n * 3 + 2] = (uint32_t)best_len;
    n++;
    pos += best_len;
  }
  return n;
}
