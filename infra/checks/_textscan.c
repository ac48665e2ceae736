/* One pass over a block of text JSONL lines: the dataset validator's fast path.
 *
 * scan(block, start, chars_per_token, tokens_per_turn, limit) reads whole lines of `block`
 * from byte `start` on and accepts each line that is provably a clean text example in one of
 * the three text formats, with any JSON whitespace between tokens and keys in any order:
 *
 *   chat               {"messages": [{"role": "system"|"user"|"assistant", "content": "…"}, …]}
 *   prompt_completion  {"prompt": "…", "completion": "…"}
 *   generate_content   {"systemInstruction": {"parts": [{"text": "…"}, …]},   (optional;
 *                                                     or "system_instruction")
 *                       "contents": [{"role": "user"|"assistant", "parts": [{"text": "…"}, …]}, …]}
 *
 * A line is accepted only when all of these hold, checked in the same pass:
 *   - it is exactly one of those shapes: no other key, no duplicate key, no key written with
 *     escapes, roles written plainly, every text a JSON string (so the line is valid JSON);
 *   - strings are valid UTF-8 and valid JSON strings (no raw control characters, only the
 *     JSON escapes, \u surrogates only as pairs);
 *   - roles in order: chat may open with one system turn; then user and assistant alternate,
 *     starting with user and ending with assistant;
 *   - no text is empty or whitespace only (whitespace as Python's str.isspace()).
 * It stops at the first line that is not all of that, and before the first line of another
 * format, and returns
 *   (accepted lines, end offset, estimated tokens, turns, characters, too_long, format)
 * where `end` is the offset of the first line not accepted (len(block) when all were), tokens
 * are the estimate of infra.checks.tokens.estimate_tokens summed per line (ceil(chars / cpt)
 * + tpt * turns, characters counted as Python's len() counts them; turns as the line path
 * counts them: messages; 2; contents plus the system instruction; a turn's parts count as
 * joined with newlines), too_long lists (line
 * index, tokens) of accepted lines over `limit` (limit < 0: none), and format is 0 chat,
 * 1 prompt_completion, 2 generate_content (of all accepted lines).
 *
 * The scan holds no Python object and releases the GIL. It never accepts what the exact
 * line path would report: tests/checks/test_fast_path.py and test_textscan.py feed both every
 * near miss and thousands of mutated lines.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef const unsigned char *ptr;

enum { ROLE_NONE = 0, ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };
enum { KIND_CHAT = 0, KIND_PROMPT_COMPLETION = 1, KIND_GENERATE_CONTENT = 2 };

/* Bytes a string may hold as they are (printable ASCII but '"' and '\\'). */
static unsigned char plain[256];

static void init_tables(void) {
    for (int c = 0x20; c < 0x80; c++) plain[c] = 1;
    plain['"'] = 0;
    plain['\\'] = 0;
}

/* Python's str.isspace() (Py_UNICODE_ISSPACE) over all code points. */
static int is_space(uint32_t c) {
    if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
    switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F:
    case 0x205F: case 0x3000:
        return 1;
    default:
        return c >= 0x2000 && c <= 0x200A;
    }
}

static int hex4(ptr p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

static inline ptr skip_ws(ptr p, ptr end) {
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\r')) p++;
    return p;
}

/* A JSON string whose opening quote is at p[-1]. Returns the byte after the closing quote or
 * NULL. Counts its characters into *chars and sets *nonspace when one is not whitespace. */
static ptr string(ptr p, ptr end, Py_ssize_t *chars, int *nonspace) {
    Py_ssize_t n = 0;
    int ns = 0;
    for (;;) {
        ptr run = p;
        if (ns) {
            while (p < end && plain[*p]) p++;
        } else {
            while (p < end && plain[*p]) {
                if (*p != ' ') ns = 1;
                p++;
            }
        }
        n += p - run;
        if (p >= end) return NULL;
        unsigned char c = *p;
        uint32_t cp;
        if (c == '"') {
            *chars += n;
            *nonspace = ns;
            return p + 1;
        }
        if (c == '\\') {
            if (end - p < 2) return NULL;
            switch (p[1]) {
            case '"': case '\\': case '/': cp = '!'; p += 2; break; /* not space */
            case 'b': cp = 0x08; p += 2; break;
            case 'f': cp = 0x0C; p += 2; break;
            case 'n': cp = 0x0A; p += 2; break;
            case 'r': cp = 0x0D; p += 2; break;
            case 't': cp = 0x09; p += 2; break;
            case 'u':
                if (end - p < 6 || !hex4(p + 2, &cp)) return NULL;
                p += 6;
                if (cp >= 0xDC00 && cp <= 0xDFFF) return NULL; /* lone low surrogate */
                if (cp >= 0xD800 && cp <= 0xDBFF) {                /* needs its low half */
                    uint32_t lo;
                    if (end - p < 6 || p[0] != '\\' || p[1] != 'u' || !hex4(p + 2, &lo) ||
                        lo < 0xDC00 || lo > 0xDFFF)
                        return NULL;
                    p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                break;
            default:
                return NULL;
            }
        } else if (c < 0x80) {
            return NULL; /* a raw control character */
        } else if (c >= 0xC2 && c <= 0xDF) {
            if (end - p < 2 || (p[1] & 0xC0) != 0x80) return NULL;
            cp = ((uint32_t)(c & 0x1F) << 6) | (p[1] & 0x3F);
            p += 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            if (end - p < 3 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80) return NULL;
            if (c == 0xE0 && p[1] < 0xA0) return NULL; /* overlong */
            if (c == 0xED && p[1] > 0x9F) return NULL; /* a surrogate */
            cp = ((uint32_t)(c & 0x0F) << 12) | ((uint32_t)(p[1] & 0x3F) << 6) | (p[2] & 0x3F);
            p += 3;
        } else if (c >= 0xF0 && c <= 0xF4) {
            if (end - p < 4 || (p[1] & 0xC0) != 0x80 || (p[2] & 0xC0) != 0x80 ||
                (p[3] & 0xC0) != 0x80)
                return NULL;
            if (c == 0xF0 && p[1] < 0x90) return NULL; /* overlong */
            if (c == 0xF4 && p[1] > 0x8F) return NULL; /* over U+10FFFF */
            p += 4;
            cp = 0x10000; /* not space; the exact value does not matter */
        } else {
            return NULL; /* a continuation byte first, or C0, C1, F5..FF */
        }
        n += 1;
        if (!ns && !is_space(cp)) ns = 1;
    }
}

/* A key's raw bytes (no escapes allowed) after its opening quote at p[-1]: the byte after the
 * closing quote, or NULL. */
static ptr key(ptr p, ptr end, ptr *start, Py_ssize_t *len) {
    ptr s = p;
    while (p < end && plain[*p]) p++;
    if (p >= end || *p != '"') return NULL;
    *start = s;
    *len = p - s;
    return p + 1;
}

#define KEY_IS(s, n, lit) ((n) == (Py_ssize_t)sizeof(lit) - 1 && memcmp((s), (lit), (n)) == 0)

/* A role string's plain bytes after its opening quote at p[-1]: ROLE_*, or ROLE_NONE for
 * anything else; *out is the byte after the closing quote (NULL: not a plain string). */
static int role_value(ptr p, ptr end, ptr *out) {
    ptr v;
    Py_ssize_t n;
    *out = key(p, end, &v, &n);
    if (*out == NULL) return ROLE_NONE;
    if (KEY_IS(v, n, "user")) return ROLE_USER;
    if (KEY_IS(v, n, "assistant")) return ROLE_ASSISTANT;
    if (KEY_IS(v, n, "system")) return ROLE_SYSTEM;
    return ROLE_NONE;
}

/* A text value at p (its opening quote): counts its characters and refuses one that is empty
 * or whitespace only. Returns the byte after it or NULL. */
static ptr text(ptr p, ptr end, Py_ssize_t *chars) {
    int nonspace;
    if (p >= end || *p != '"') return NULL;
    p = string(p + 1, end, chars, &nonspace);
    return (p == NULL || !nonspace) ? NULL : p;
}

/* The first key of an object whose '{' is at p: its opening quote, or NULL (an empty object
 * has none of the keys we need). */
static ptr first_key(ptr p, ptr end) {
    p = skip_ws(p + 1, end);
    return (p < end && *p == '"') ? p : NULL;
}

/* A key at p (its opening quote) and its colon: sets *k, *klen; returns the value's first
 * byte or NULL. */
static ptr key_colon(ptr p, ptr end, ptr *k, Py_ssize_t *klen) {
    p = key(p + 1, end, k, klen);
    if (p == NULL) return NULL;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return NULL;
    return skip_ws(p + 1, end);
}

/* After a value inside an object: the byte after its '}' with *done set, or the opening quote
 * of the next key; NULL otherwise. */
static ptr after_value(ptr p, ptr end, int *done) {
    p = skip_ws(p, end);
    if (p >= end) return NULL;
    if (*p == '}') {
        *done = 1;
        return p + 1;
    }
    if (*p != ',') return NULL;
    p = skip_ws(p + 1, end);
    return (p < end && *p == '"') ? p : NULL;
}

/* After an item of a list: the next item's '{' (*done unset) or the byte after ']' (*done
 * set); NULL otherwise. */
static ptr after_item(ptr p, ptr end, int *done) {
    p = skip_ws(p, end);
    if (p >= end) return NULL;
    if (*p == ']') {
        *done = 1;
        return p + 1;
    }
    if (*p != ',') return NULL;
    p = skip_ws(p + 1, end);
    return (p < end && *p == '{') ? p : NULL;
}

/* The first item of a list of objects at p ('['): its '{', or NULL (empty lists are refused:
 * every list we read needs an item). */
static ptr first_item(ptr p, ptr end) {
    if (p >= end || *p != '[') return NULL;
    p = skip_ws(p + 1, end);
    return (p < end && *p == '{') ? p : NULL;
}

/* Role order: chat may open with one system turn; then user and assistant alternate, from
 * user. Returns 0 when `role` cannot come after *state. */
static int next_role(int *state, int role) {
    switch (role) {
    case ROLE_SYSTEM:
        if (*state != ROLE_NONE) return 0;
        break;
    case ROLE_USER:
        if (*state == ROLE_USER) return 0;
        break;
    case ROLE_ASSISTANT:
        if (*state != ROLE_USER) return 0;
        break;
    default:
        return 0;
    }
    *state = role;
    return 1;
}

/* A list of {"text": "…"} parts at p ('['). Returns the byte after ']' or NULL. The turn's
 * text is its parts joined with newlines (as the trainer joins them), so n parts add n - 1. */
static ptr parts(ptr p, ptr end, Py_ssize_t *chars) {
    int last = 0;
    *chars -= 1;
    p = first_item(p, end);
    while (p != NULL && !last) {
        ptr k;
        Py_ssize_t klen;
        int done = 0;
        p = first_key(p, end);
        if (p == NULL) return NULL;
        p = key_colon(p, end, &k, &klen);
        if (p == NULL || !KEY_IS(k, klen, "text")) return NULL;
        p = text(p, end, chars);
        if (p == NULL) return NULL;
        p = after_value(p, end, &done);
        if (p == NULL || !done) return NULL; /* "text" is a part's only key */
        *chars += 1;
        p = after_item(p, end, &last);
    }
    return p;
}

/* A chat message {"role", "content"} from its '{'. Returns the byte after '}' or NULL. */
static ptr message(ptr p, ptr end, int *role, Py_ssize_t *chars) {
    int seen_role = 0, seen_content = 0, done = 0;
    p = first_key(p, end);
    while (p != NULL && !done) {
        ptr k;
        Py_ssize_t klen;
        p = key_colon(p, end, &k, &klen);
        if (p == NULL || p >= end || *p != '"') return NULL; /* both values are strings */
        if (KEY_IS(k, klen, "role") && !seen_role) {
            seen_role = 1;
            *role = role_value(p + 1, end, &p);
            if (*role == ROLE_NONE) return NULL;
        } else if (KEY_IS(k, klen, "content") && !seen_content) {
            seen_content = 1;
            p = text(p, end, chars);
        } else {
            return NULL; /* another key, or one repeated */
        }
        if (p != NULL) p = after_value(p, end, &done);
    }
    return (seen_role && seen_content) ? p : NULL;
}

/* A GenerateContent content {"role", "parts"} from its '{'. */
static ptr content(ptr p, ptr end, int *role, Py_ssize_t *chars) {
    int seen_role = 0, seen_parts = 0, done = 0;
    p = first_key(p, end);
    while (p != NULL && !done) {
        ptr k;
        Py_ssize_t klen;
        p = key_colon(p, end, &k, &klen);
        if (p == NULL || p >= end) return NULL;
        if (KEY_IS(k, klen, "role") && !seen_role) {
            seen_role = 1;
            if (*p != '"') return NULL;
            *role = role_value(p + 1, end, &p);
            if (*role != ROLE_USER && *role != ROLE_ASSISTANT) return NULL;
        } else if (KEY_IS(k, klen, "parts") && !seen_parts) {
            seen_parts = 1;
            p = parts(p, end, chars);
        } else {
            return NULL;
        }
        if (p != NULL) p = after_value(p, end, &done);
    }
    return (seen_role && seen_parts) ? p : NULL;
}

/* A list of chat messages (as_contents = 0) or GenerateContent contents (1) at p ('['), roles
 * in order and ending with the assistant's. Adds its items to *turns. */
static ptr turns_list(ptr p, ptr end, int as_contents, Py_ssize_t *chars, Py_ssize_t *turns) {
    int state = ROLE_NONE, last = 0;
    p = first_item(p, end);
    while (p != NULL && !last) {
        int role = ROLE_NONE;
        p = as_contents ? content(p, end, &role, chars) : message(p, end, &role, chars);
        if (p == NULL || !next_role(&state, role)) return NULL;
        ++*turns;
        p = after_item(p, end, &last);
    }
    return (p != NULL && state == ROLE_ASSISTANT) ? p : NULL;
}

/* The top-level keys of the three text formats. */
enum {
    K_MESSAGES = 1,
    K_PROMPT = 2,
    K_COMPLETION = 4,
    K_CONTENTS = 8,
    K_SYSTEM = 16,
};

/* One line [p, end) (without its newline). Returns its format (KIND_*) when accepted, -1
 * otherwise; sets its characters and turns. */
static int line(ptr p, ptr end, Py_ssize_t *chars, Py_ssize_t *turns) {
    Py_ssize_t c = 0, n = 0;
    int seen = 0, done = 0;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return -1;
    p = first_key(p, end);
    while (p != NULL && !done) {
        ptr k;
        Py_ssize_t klen;
        int bit;
        p = key_colon(p, end, &k, &klen);
        if (p == NULL) return -1;
        if (KEY_IS(k, klen, "messages")) bit = K_MESSAGES;
        else if (KEY_IS(k, klen, "prompt")) bit = K_PROMPT;
        else if (KEY_IS(k, klen, "completion")) bit = K_COMPLETION;
        else if (KEY_IS(k, klen, "contents")) bit = K_CONTENTS;
        else if (KEY_IS(k, klen, "systemInstruction") || KEY_IS(k, klen, "system_instruction"))
            bit = K_SYSTEM; /* either spelling; both at once is refused as a duplicate */
        else return -1;
        if (seen & bit) return -1; /* a duplicate key */
        seen |= bit;
        switch (bit) {
        case K_MESSAGES:
            p = turns_list(p, end, 0, &c, &n);
            break;
        case K_CONTENTS:
            p = turns_list(p, end, 1, &c, &n);
            break;
        case K_SYSTEM: /* {"parts": [...]} and nothing else */
            if (p >= end || *p != '{') return -1;
            p = first_key(p, end);
            if (p == NULL) return -1;
            p = key_colon(p, end, &k, &klen);
            if (p == NULL || !KEY_IS(k, klen, "parts")) return -1;
            p = parts(p, end, &c);
            if (p == NULL) return -1;
            int inner = 0;
            p = after_value(p, end, &inner);
            if (p == NULL || !inner) return -1;
            n++;
            break;
        default: /* prompt, completion */
            p = text(p, end, &c);
        }
        if (p != NULL) p = after_value(p, end, &done);
    }
    if (p == NULL || skip_ws(p, end) != end) return -1;
    *chars = c;
    *turns = n;
    switch (seen) {
    case K_MESSAGES:
        return KIND_CHAT;
    case K_PROMPT | K_COMPLETION:
        *turns = 2;
        return KIND_PROMPT_COMPLETION;
    case K_CONTENTS:
    case K_CONTENTS | K_SYSTEM:
        return KIND_GENERATE_CONTENT;
    default:
        return -1;
    }
}

typedef struct {
    Py_ssize_t index;
    long long tokens;
} TooLong;

static PyObject *scan(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer buf;
    Py_ssize_t start, cpt, tpt;
    long long limit;
    if (!PyArg_ParseTuple(args, "y*nnnL", &buf, &start, &cpt, &tpt, &limit)) return NULL;
    if (start < 0 || start > buf.len || cpt <= 0 || tpt < 0) {
        PyBuffer_Release(&buf);
        PyErr_SetString(PyExc_ValueError, "scan: bad start, chars_per_token or tokens_per_turn");
        return NULL;
    }
    ptr base = (ptr)buf.buf;
    ptr p = base + start, stop = base + buf.len;
    Py_ssize_t lines = 0, turns = 0, chars = 0, n_long = 0, cap_long = 0;
    long long tokens = 0;
    int kind = -1;
    TooLong *longs = NULL;
    int nomem = 0;
    Py_BEGIN_ALLOW_THREADS
    while (p < stop) {
        ptr nl = memchr(p, '\n', (size_t)(stop - p));
        if (nl == NULL) break; /* an unfinished line is not ours to judge */
        Py_ssize_t c, t;
        int k = line(p, nl, &c, &t);
        if (k < 0 || (kind >= 0 && k != kind)) break; /* unproven, or another format */
        kind = k;
        long long tok = (long long)((c + cpt - 1) / cpt) + (long long)tpt * t;
        if (limit >= 0 && tok > limit) {
            if (n_long == cap_long) {
                Py_ssize_t cap = cap_long ? 2 * cap_long : 16;
                TooLong *grown = realloc(longs, (size_t)cap * sizeof(TooLong));
                if (grown == NULL) {
                    nomem = 1;
                    break;
                }
                longs = grown;
                cap_long = cap;
            }
            longs[n_long].index = lines;
            longs[n_long].tokens = tok;
            n_long++;
        }
        tokens += tok;
        turns += t;
        chars += c;
        lines++;
        p = nl + 1;
    }
    Py_END_ALLOW_THREADS
    Py_ssize_t offset = p - base;
    PyBuffer_Release(&buf);
    if (nomem) {
        free(longs);
        return PyErr_NoMemory();
    }
    PyObject *too_long = PyList_New(n_long);
    if (too_long == NULL) {
        free(longs);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n_long; i++) {
        PyObject *item = Py_BuildValue("(nL)", longs[i].index, longs[i].tokens);
        if (item == NULL) {
            free(longs);
            Py_DECREF(too_long);
            return NULL;
        }
        PyList_SET_ITEM(too_long, i, item);
    }
    free(longs);
    return Py_BuildValue("(nnLnnNi)", lines, offset, tokens, turns, chars, too_long, kind);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(block, start, chars_per_token, tokens_per_turn, limit) -> (lines, end, tokens, "
     "turns, chars, too_long, format): accepts clean text example lines of one format from "
     "`start` on, stopping at the first that is not provably clean or of another format."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_textscan",
    "One-pass checker of clean text JSONL examples (the dataset validator's fast path).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__textscan(void) {
    init_tables();
    return PyModule_Create(&module);
}
