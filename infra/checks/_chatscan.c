/* One pass over a block of text chat JSONL lines: the dataset validator's fast path.
 *
 * scan(block, start, chars_per_token, tokens_per_turn, limit) reads whole lines of `block`
 * from byte `start` on and accepts each line that is provably a clean text chat example:
 *
 *   {"messages": [{"role": "system"|"user"|"assistant", "content": "<text>"}, ...]}
 *
 * with any JSON whitespace between tokens and the keys in any order. A line is accepted only
 * when all of these hold, checked in the same pass:
 *   - it is exactly that shape: no other key, no duplicate key, no key written with escapes,
 *     roles written plainly, every content a JSON string (so the line is valid JSON);
 *   - strings are valid UTF-8 and valid JSON strings (no raw control characters, only the
 *     JSON escapes, \u surrogates only as pairs);
 *   - roles in order: an optional system turn first, then user/assistant alternating, starting
 *     with user and ending with assistant;
 *   - no content is empty or whitespace only (whitespace as Python's str.isspace()).
 * It stops at the first line that is not all of that (the caller checks that one line exactly
 * and resumes after it) and returns
 *   (accepted lines, end offset, estimated tokens, messages, characters, too_long)
 * where `end` is the offset of the first unaccepted line (len(block) when all were), tokens are
 * the estimate of infra.checks.tokens.estimate_tokens summed per line (ceil(chars / cpt) +
 * tpt * turns, characters counted as Python's len() counts them), and too_long lists
 * (line index, tokens) for accepted lines over `limit` (limit < 0: none).
 *
 * The scan holds no Python object and releases the GIL, so blocks can be scanned on threads.
 * It never accepts what the exact line-by-line path would report: tests/checks/
 * test_fast_path.py feeds both paths every near miss.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef const unsigned char *ptr;

enum { ROLE_NONE = 0, ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT };

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

/* One message object, from just after its '{'. Returns the byte after its '}' or NULL. */
static ptr message(ptr p, ptr end, int *role, Py_ssize_t *chars) {
    int seen_role = 0, seen_content = 0;
    p = skip_ws(p, end);
    if (p >= end || *p != '"') return NULL;
    for (;;) {
        ptr k;
        Py_ssize_t klen;
        p = key(p + 1, end, &k, &klen);
        if (p == NULL) return NULL;
        p = skip_ws(p, end);
        if (p >= end || *p != ':') return NULL;
        p = skip_ws(p + 1, end);
        if (p >= end || *p != '"') return NULL; /* both values must be strings */
        if (KEY_IS(k, klen, "role")) {
            if (seen_role) return NULL;
            seen_role = 1;
            ptr v;
            Py_ssize_t vlen;
            p = key(p + 1, end, &v, &vlen); /* plain bytes only, like a key */
            if (p == NULL) return NULL;
            if (KEY_IS(v, vlen, "user")) *role = ROLE_USER;
            else if (KEY_IS(v, vlen, "assistant")) *role = ROLE_ASSISTANT;
            else if (KEY_IS(v, vlen, "system")) *role = ROLE_SYSTEM;
            else return NULL;
        } else if (KEY_IS(k, klen, "content")) {
            if (seen_content) return NULL;
            seen_content = 1;
            int nonspace;
            p = string(p + 1, end, chars, &nonspace);
            if (p == NULL || !nonspace) return NULL;
        } else {
            return NULL;
        }
        p = skip_ws(p, end);
        if (p >= end) return NULL;
        if (*p == '}') {
            if (!(seen_role && seen_content)) return NULL;
            return p + 1;
        }
        if (*p != ',') return NULL;
        p = skip_ws(p + 1, end);
        if (p >= end || *p != '"') return NULL;
    }
}

/* One line [p, end) (without its newline). Returns 1 when accepted, with its characters and
 * turns. */
static int line(ptr p, ptr end, Py_ssize_t *chars, Py_ssize_t *turns) {
    Py_ssize_t c = 0, n = 0;
    int state = ROLE_NONE; /* the last role seen */
    ptr k;
    Py_ssize_t klen;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return 0;
    p = skip_ws(p + 1, end);
    if (p >= end || *p != '"') return 0;
    p = key(p + 1, end, &k, &klen);
    if (p == NULL || !KEY_IS(k, klen, "messages")) return 0;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return 0;
    p = skip_ws(p + 1, end);
    if (p >= end || *p != '[') return 0;
    p = skip_ws(p + 1, end);
    if (p >= end || *p != '{') return 0; /* an empty list has no assistant turn */
    for (;;) {
        int role = ROLE_NONE;
        p = message(p + 1, end, &role, &c);
        if (p == NULL) return 0;
        switch (role) {
        case ROLE_SYSTEM:
            if (state != ROLE_NONE) return 0;
            break;
        case ROLE_USER:
            if (state == ROLE_USER) return 0;
            break;
        default: /* assistant */
            if (state != ROLE_USER) return 0;
        }
        state = role;
        n++;
        p = skip_ws(p, end);
        if (p >= end) return 0;
        if (*p == ']') break;
        if (*p != ',') return 0;
        p = skip_ws(p + 1, end);
        if (p >= end || *p != '{') return 0;
    }
    if (state != ROLE_ASSISTANT) return 0;
    p = skip_ws(p + 1, end);
    if (p >= end || *p != '}') return 0; /* "messages" is the only key */
    p = skip_ws(p + 1, end);
    if (p != end) return 0;
    *chars = c;
    *turns = n;
    return 1;
}

typedef struct {
    Py_ssize_t index;
    long long tokens;
} TooLong;

static PyObject *scan(PyObject *self, PyObject *args) {
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
    TooLong *longs = NULL;
    int nomem = 0;
    Py_BEGIN_ALLOW_THREADS
    while (p < stop) {
        ptr nl = memchr(p, '\n', (size_t)(stop - p));
        if (nl == NULL) break; /* an unfinished line is not ours to judge */
        Py_ssize_t c, t;
        if (!line(p, nl, &c, &t)) break;
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
    return Py_BuildValue("(nnLnnN)", lines, offset, tokens, turns, chars, too_long);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(block, start, chars_per_token, tokens_per_turn, limit) -> (lines, end, tokens, "
     "turns, chars, too_long): accepts clean text chat lines from `start` on, stopping at the "
     "first that is not provably clean."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_chatscan",
    "One-pass checker of clean text chat JSONL lines (the dataset validator's fast path).", -1,
    methods,
};

PyMODINIT_FUNC PyInit__chatscan(void) {
    init_tables();
    return PyModule_Create(&module);
}
