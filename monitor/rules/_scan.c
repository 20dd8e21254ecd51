/*
 * The matcher's inner loop in C: one Aho-Corasick pass over a folded text, the word-end
 * checks, the overlaps within groups, and the hits, with no Python code per candidate.
 *
 * Why hand-written: the automaton libraries for Python (ahocorasick-rs, pyahocorasick)
 * hand every candidate back as a Python tuple, and the word ends, particle chains and
 * overlaps then cost about 1.5 us of Python each; on news text a quarter of the words
 * are candidates, which holds matching to about a third of the speed the daemon needs
 * (docs/benchmarks.md, "Rule matching"). No library does the Korean word-end rules, so
 * the automaton, a few hundred lines, is written here with them. monitor/rules/match.py
 * keeps the same rules in Python over ahocorasick-rs: it is used wherever this module
 * was not built, and the tests hold the two to the same hits on random and labelled text.
 *
 * Semantics (the module docstring of monitor/rules/match.py says them in full):
 * - every occurrence of every pattern, overlapping;
 * - kept if it stands as a word: a Hangul-initial pattern not after Hangul, a
 *   word-initial one (Latin letter, digit, '_' below U+1100) not after such a
 *   character; a Hangul-final one followed by a non-Hangul character or by a chain of
 *   one to max_particles particles and then a non-Hangul character; a word-final one
 *   followed by a non-word character or by a suffix (s, es) and then one;
 * - within a group, the leftmost, then the longest wins; a pattern's entries share its
 *   span and do not compete with one another.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { CLS_OTHER = 0, CLS_HANGUL = 1, CLS_WORD = 2 };

typedef struct {
    int32_t first; /* first edge in the edge array */
    int32_t count; /* number of edges, sorted by symbol */
    int32_t moves_first; /* first move: the node's edges and those along its fail chain */
    int32_t moves_count;
    int32_t fail;
    int32_t out;   /* pattern that ends here, or -1 */
    int32_t dict;  /* the nearest state along the fail chain with out >= 0, or -1 */
} Node;

typedef struct {
    int32_t symbol;
    int32_t target;
} Edge;

typedef struct {
    PyObject *term_id;
    PyObject *term;
    int32_t group;
} Entry;

/* A small trie of code points for the particles and the suffixes. */
typedef struct {
    Py_UCS4 ch;
    int32_t child; /* first child, or -1 */
    int32_t next;  /* next sibling, or -1 */
    int32_t terminal;
} CharNode;

typedef struct {
    CharNode *nodes;
    int32_t size, cap;
} CharTrie;

typedef struct {
    int32_t start, end, pattern;
} Candidate;

typedef struct {
    PyObject_HEAD
    uint16_t *bmp_symbols;    /* code point (BMP) -> symbol, 0: in no pattern */
    Py_UCS4 *astral_chars;    /* sorted code points above the BMP */
    int32_t *astral_symbols;
    Py_ssize_t astral_count;
    int32_t symbol_count;     /* symbols are 1..symbol_count */
    int32_t *root_next;       /* symbol -> state from the root, 0: none */
    Node *nodes;
    int32_t node_count;
    Edge *edges;
    Edge *moves; /* per node, the automaton's moves short of the root's, sorted */
    int32_t *pattern_length;
    int8_t *pattern_head;
    int8_t *pattern_tail;
    int32_t *entry_first;
    int32_t *entry_count;
    int32_t pattern_count;
    Entry *entries;
    int32_t entry_total;
    int32_t group_count;
    int32_t *taken_start, *taken_end; /* per group: span of its last hit */
    uint32_t *taken_mark;             /* per group: the scan that set it */
    uint32_t mark;
    CharTrie particles;
    CharTrie suffixes;
    int max_particles;
    Candidate *found;
    Py_ssize_t found_cap;
    uint8_t *plain; /* bitmap over the BMP: characters folding leaves as they are */
    /* Characters that fold to plain ones (…, ㈜, full-width and capital letters, ß),
       sorted, with where their folded form is in expansion_data. */
    Py_UCS4 *expansion_chars;
    int32_t *expansion_first, *expansion_length;
    Py_UCS4 *expansion_data;
    Py_ssize_t expansion_count;
    /* Set during a call: its buffers are the scanner's own, and making the hits can run
       the garbage collector, hence finalizers, hence (in principle) another call. */
    int busy;
} Scanner;

/* ---------------------------------------------------------------- characters */

static inline int is_hangul(Py_UCS4 c) {
    return (c >= 0xAC00 && c <= 0xD7A3) || (c >= 0x1100 && c <= 0x11FF) ||
           (c >= 0x3130 && c <= 0x318F) || (c >= 0xA960 && c <= 0xA97F) ||
           (c >= 0xD7B0 && c <= 0xD7FF);
}

/* A letter or digit of a script written with spaces between words (below U+1100). */
static inline int is_word(Py_UCS4 c) {
    return c < 0x1100 && (c == '_' || Py_UNICODE_ISALNUM(c));
}

/* Where c is in a sorted array of code points, or -1. */
static Py_ssize_t char_index(const Py_UCS4 *chars, Py_ssize_t count, Py_UCS4 c) {
    Py_ssize_t lo = 0, hi = count;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (chars[mid] < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < count && chars[lo] == c) ? lo : -1;
}

static inline int32_t symbol_of(const Scanner *s, Py_UCS4 c) {
    if (c < 0x10000)
        return s->bmp_symbols[c];
    Py_ssize_t at = char_index(s->astral_chars, s->astral_count, c);
    return at >= 0 ? s->astral_symbols[at] : 0;
}

/* ---------------------------------------------------------------- char tries */

static int chartrie_init(CharTrie *t) {
    t->cap = 64;
    t->size = 1;
    t->nodes = PyMem_Malloc(sizeof(CharNode) * t->cap);
    if (!t->nodes)
        return -1;
    t->nodes[0] = (CharNode){0, -1, -1, 0};
    return 0;
}

/* The child of node on c in a char trie, or -1. */
static inline int32_t chartrie_child(const CharNode *nodes, int32_t node, Py_UCS4 c) {
    int32_t child = nodes[node].child;
    while (child >= 0 && nodes[child].ch != c)
        child = nodes[child].next;
    return child;
}

static int chartrie_add(CharTrie *t, PyObject *word) {
    Py_ssize_t n = PyUnicode_GET_LENGTH(word);
    int kind = PyUnicode_KIND(word);
    const void *data = PyUnicode_DATA(word);
    int32_t node = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        int32_t child = chartrie_child(t->nodes, node, c);
        if (child < 0) {
            if (t->size == t->cap) {
                CharNode *grown = PyMem_Realloc(t->nodes, sizeof(CharNode) * t->cap * 2);
                if (!grown)
                    return -1;
                t->nodes = grown;
                t->cap *= 2;
            }
            child = t->size++;
            t->nodes[child] = (CharNode){c, -1, t->nodes[node].child, 0};
            t->nodes[node].child = child;
        }
        node = child;
    }
    if (node)
        t->nodes[node].terminal = 1;
    return 0;
}

/* Whether a chain of 1..max particles starts at pos (depth already taken) and is then
   followed by the end of the text or a non-Hangul character. Any way of cutting the
   chain counts, as with the regex (?:p1|p2|...){1,max}(?![Hangul]). */
/* A character as folding makes it, for a text that folds one for one: only ASCII
   capitals change (find() scans such a text without folding it first). */
static inline Py_UCS4 read_folded(int kind, const void *data, Py_ssize_t i) {
    Py_UCS4 c = PyUnicode_READ(kind, data, i);
    return (c - 'A' < 26u) ? c + 32 : c;
}

static int particle_chain(const Scanner *s, int kind, const void *data, Py_ssize_t size,
                          Py_ssize_t pos, int depth) {
    const CharNode *nodes = s->particles.nodes;
    int32_t node = 0;
    for (Py_ssize_t j = pos; j < size; j++) {
        node = chartrie_child(nodes, node, read_folded(kind, data, j));
        if (node < 0)
            return 0;
        if (nodes[node].terminal) {
            if (j + 1 >= size || !is_hangul(read_folded(kind, data, j + 1)))
                return 1;
            if (depth + 1 < s->max_particles &&
                particle_chain(s, kind, data, size, j + 1, depth + 1))
                return 1;
        }
    }
    return 0;
}

/* Whether a Latin suffix (s, es) at pos is followed by the end or a non-word char. */
static int latin_suffix(const Scanner *s, int kind, const void *data, Py_ssize_t size,
                        Py_ssize_t pos) {
    const CharNode *nodes = s->suffixes.nodes;
    int32_t node = 0;
    for (Py_ssize_t j = pos; j < size; j++) {
        node = chartrie_child(nodes, node, read_folded(kind, data, j));
        if (node < 0)
            return 0;
        if (nodes[node].terminal && (j + 1 >= size || !is_word(read_folded(kind, data, j + 1))))
            return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- the automaton */

/* The target of the edge on symbol in a list sorted by symbol, or -1. */
static inline int32_t edge_lookup(const Edge *edges, int32_t count, int32_t symbol) {
    if (count <= 8) {
        for (int32_t i = 0; i < count; i++)
            if (edges[i].symbol == symbol)
                return edges[i].target;
        return -1;
    }
    int32_t lo = 0, hi = count;
    while (lo < hi) {
        int32_t mid = (lo + hi) / 2;
        if (edges[mid].symbol < symbol)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (lo < count && edges[lo].symbol == symbol) ? edges[lo].target : -1;
}

/* The trie's child of state on symbol, or -1. */
static int32_t child_of(const Scanner *s, int32_t state, int32_t symbol) {
    const Node *node = &s->nodes[state];
    return edge_lookup(s->edges + node->first, node->count, symbol);
}

/* The automaton's move from state on symbol, or -1 when it goes through the root. */
static inline int32_t move_of(const Scanner *s, int32_t state, int32_t symbol) {
    const Node *node = &s->nodes[state];
    return edge_lookup(s->moves + node->moves_first, node->moves_count, symbol);
}

static void scanner_free_memory(Scanner *s) {
    PyMem_Free(s->bmp_symbols);
    PyMem_Free(s->astral_chars);
    PyMem_Free(s->astral_symbols);
    PyMem_Free(s->root_next);
    PyMem_Free(s->nodes);
    PyMem_Free(s->edges);
    PyMem_Free(s->moves);
    PyMem_Free(s->pattern_length);
    PyMem_Free(s->pattern_head);
    PyMem_Free(s->pattern_tail);
    PyMem_Free(s->entry_first);
    PyMem_Free(s->entry_count);
    if (s->entries) {
        for (int32_t i = 0; i < s->entry_total; i++) {
            Py_XDECREF(s->entries[i].term_id);
            Py_XDECREF(s->entries[i].term);
        }
    }
    PyMem_Free(s->entries);
    PyMem_Free(s->taken_start);
    PyMem_Free(s->taken_end);
    PyMem_Free(s->taken_mark);
    PyMem_Free(s->particles.nodes);
    PyMem_Free(s->suffixes.nodes);
    PyMem_Free(s->found);
    PyMem_Free(s->plain);
    PyMem_Free(s->expansion_chars);
    PyMem_Free(s->expansion_first);
    PyMem_Free(s->expansion_length);
    PyMem_Free(s->expansion_data);
    memset((char *)s + sizeof(PyObject), 0, sizeof(Scanner) - sizeof(PyObject));
}

static void Scanner_dealloc(Scanner *s) {
    scanner_free_memory(s);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

/* A trie under construction: per node a growable list of (symbol, target). */
typedef struct {
    Edge *edges;
    int32_t count, cap;
} EdgeList;

static int edgelist_add(EdgeList *l, int32_t symbol, int32_t target) {
    if (l->count == l->cap) {
        int32_t cap = l->cap ? l->cap * 2 : 2;
        Edge *grown = PyMem_Realloc(l->edges, sizeof(Edge) * cap);
        if (!grown)
            return -1;
        l->edges = grown;
        l->cap = cap;
    }
    l->edges[l->count++] = (Edge){symbol, target};
    return 0;
}

static int edge_order(const void *a, const void *b) {
    int32_t x = ((const Edge *)a)->symbol, y = ((const Edge *)b)->symbol;
    return (x > y) - (x < y);
}

static int astral_order(const void *a, const void *b) {
    Py_UCS4 x = *(const Py_UCS4 *)a, y = *(const Py_UCS4 *)b;
    return (x > y) - (x < y);
}

typedef struct {
    Py_UCS4 ch;
    PyObject *folded;
} Expansion;

static int expansion_order(const void *a, const void *b) {
    Py_UCS4 x = ((const Expansion *)a)->ch, y = ((const Expansion *)b)->ch;
    return (x > y) - (x < y);
}

/* expansions: a sequence of (character, its folded form); each folded character must be
   printable ASCII but the space, or plain (checked, so that a scan of the folded form
   never meets what it cannot read). */
static int scanner_set_expansions(Scanner *s, PyObject *arg) {
    PyObject *pairs = PySequence_Fast(arg, "expansions must be a sequence of pairs");
    if (!pairs)
        return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(pairs), total = 0;
    Expansion *list = PyMem_Calloc(count + 1, sizeof(Expansion));
    int result = -1;
    if (!list) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(pairs, i), *ch, *folded;
        if (!PyTuple_Check(pair) || !PyArg_ParseTuple(pair, "UU", &ch, &folded) ||
            PyUnicode_READY(ch) < 0 || PyUnicode_READY(folded) < 0) {
            if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_TypeError)) {
                PyErr_Clear();
                PyErr_SetString(PyExc_TypeError, "an expansion is (character, folded form)");
            }
            goto done;
        }
        Py_ssize_t n = PyUnicode_GET_LENGTH(folded);
        if (PyUnicode_GET_LENGTH(ch) != 1 || n < 1 || n > 18) {
            PyErr_SetString(PyExc_ValueError, "an expansion is one character to 1..18");
            goto done;
        }
        Py_UCS4 c = PyUnicode_READ_CHAR(ch, 0);
        if (c < 0x80 || c >= 0x10000 || (s->plain[c >> 3] & (1 << (c & 7)))) {
            PyErr_SetString(PyExc_ValueError, "an expanded character is above ASCII, in the "
                                              "BMP, and not plain");
            goto done;
        }
        for (Py_ssize_t k = 0; k < n; k++) {
            Py_UCS4 f = PyUnicode_READ_CHAR(folded, k);
            int ok = f < 0x80 ? (f > 0x20 && f < 0x7F && !(f - 'A' < 26u))
                              : (f < 0x10000 && (s->plain[f >> 3] & (1 << (f & 7))));
            if (!ok) {
                PyErr_SetString(PyExc_ValueError, "a folded form must be made of plain "
                                                  "characters");
                goto done;
            }
        }
        list[i] = (Expansion){c, folded};
        total += n;
    }
    qsort(list, count, sizeof(Expansion), expansion_order);
    s->expansion_chars = PyMem_Malloc(sizeof(Py_UCS4) * (count + 1));
    s->expansion_first = PyMem_Malloc(sizeof(int32_t) * (count + 1));
    s->expansion_length = PyMem_Malloc(sizeof(int32_t) * (count + 1));
    s->expansion_data = PyMem_Malloc(sizeof(Py_UCS4) * (total + 1));
    if (!s->expansion_chars || !s->expansion_first || !s->expansion_length ||
        !s->expansion_data) {
        PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (i && list[i].ch == list[i - 1].ch) {
            PyErr_SetString(PyExc_ValueError, "a character is expanded twice");
            goto done;
        }
        Py_ssize_t n = PyUnicode_GET_LENGTH(list[i].folded);
        s->expansion_chars[i] = list[i].ch;
        s->expansion_first[i] = (int32_t)at;
        s->expansion_length[i] = (int32_t)n;
        for (Py_ssize_t k = 0; k < n; k++)
            s->expansion_data[at++] = PyUnicode_READ_CHAR(list[i].folded, k);
    }
    s->expansion_count = count;
    result = 0;
done:
    PyMem_Free(list);
    Py_DECREF(pairs);
    return result;
}

/* Where c's folded form is in expansion_data, or -1. */
static Py_ssize_t expansion_of(const Scanner *s, Py_UCS4 c) {
    return char_index(s->expansion_chars, s->expansion_count, c);
}

/* Scanner(patterns, particles, suffixes, max_particles, plain[, expansions])
   plain: the characters above ASCII that folding leaves alone and that never merge with
   the one before (Hangul syllables, Han ideographs, most punctuation).
   expansions: (character, folded form) of characters that fold, on their own and
   whatever is next to them, to plain characters (see scanner_set_expansions).
   patterns: a sequence of (key, head, tail, entries), key a folded str, head/tail the
   class of its first/last character, entries a tuple of (term_id, term, group). */
static int Scanner_init(Scanner *s, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"patterns",      "particles", "suffixes",
                             "max_particles", "plain",     "expansions", NULL};
    PyObject *patterns_arg, *particles_arg, *suffixes_arg, *plain, *expansions_arg = NULL;
    int max_particles;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOiU|O", kwlist, &patterns_arg,
                                     &particles_arg, &suffixes_arg, &max_particles, &plain,
                                     &expansions_arg))
        return -1;
    if (PyUnicode_READY(plain) < 0)
        return -1;
    if (s->busy) {
        PyErr_SetString(PyExc_RuntimeError, "a Scanner was set up again within its own call");
        return -1;
    }
    scanner_free_memory(s);
    PyObject *patterns = PySequence_Fast(patterns_arg, "patterns must be a sequence");
    if (!patterns)
        return -1;
    PyObject *groups = PyDict_New();
    EdgeList *lists = NULL;
    int32_t *outs = NULL;
    int32_t node_cap = 0;
    int result = -1;
    if (!groups)
        goto done;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(patterns);
    if (count >= INT32_MAX / 2) {
        PyErr_SetString(PyExc_ValueError, "too many patterns");
        goto done;
    }
    s->pattern_count = (int32_t)count;
    s->bmp_symbols = PyMem_Calloc(0x10000, sizeof(uint16_t));
    s->pattern_length = PyMem_Calloc(count + 1, sizeof(int32_t));
    s->pattern_head = PyMem_Calloc(count + 1, 1);
    s->pattern_tail = PyMem_Calloc(count + 1, 1);
    s->entry_first = PyMem_Calloc(count + 1, sizeof(int32_t));
    s->entry_count = PyMem_Calloc(count + 1, sizeof(int32_t));
    if (!s->bmp_symbols || !s->pattern_length || !s->pattern_head || !s->pattern_tail ||
        !s->entry_first || !s->entry_count) {
        PyErr_NoMemory();
        goto done;
    }
    /* First pass: symbols, entries, and the number of trie nodes at most. */
    Py_ssize_t total_chars = 0, total_entries = 0, astral_cap = 0;
    for (Py_ssize_t p = 0; p < count; p++) {
        PyObject *item = PySequence_Fast_GET_ITEM(patterns, p);
        PyObject *key, *entries;
        int head, tail;
        if (!PyTuple_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "a pattern is (key, head, tail, entries)");
            goto done;
        }
        if (!PyArg_ParseTuple(item, "UiiO!;a pattern is (key, head, tail, entries)", &key, &head,
                              &tail, &PyTuple_Type, &entries))
            goto done;
        if (PyUnicode_READY(key) < 0)
            goto done;
        Py_ssize_t n = PyUnicode_GET_LENGTH(key);
        if (n == 0 || n >= INT32_MAX / 4) {
            PyErr_SetString(PyExc_ValueError, "a pattern must be a non-empty str");
            goto done;
        }
        total_chars += n;
        total_entries += PyTuple_GET_SIZE(entries);
        int kind = PyUnicode_KIND(key);
        const void *data = PyUnicode_DATA(key);
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c < 0x10000) {
                if (!s->bmp_symbols[c]) {
                    if (s->symbol_count >= 0xFFFF) {
                        PyErr_SetString(PyExc_ValueError, "too many distinct characters");
                        goto done;
                    }
                    s->bmp_symbols[c] = (uint16_t)++s->symbol_count;
                }
            } else {
                Py_ssize_t k;
                for (k = 0; k < s->astral_count; k++)
                    if (s->astral_chars[k] == c)
                        break;
                if (k == s->astral_count) {
                    if (s->astral_count == astral_cap) {
                        astral_cap = astral_cap ? astral_cap * 2 : 8;
                        Py_UCS4 *grown = PyMem_Realloc(s->astral_chars, sizeof(Py_UCS4) * astral_cap);
                        if (!grown) {
                            PyErr_NoMemory();
                            goto done;
                        }
                        s->astral_chars = grown;
                    }
                    s->astral_chars[s->astral_count++] = c;
                }
            }
        }
    }
    if (s->astral_count) {
        qsort(s->astral_chars, s->astral_count, sizeof(Py_UCS4), astral_order);
        s->astral_symbols = PyMem_Malloc(sizeof(int32_t) * s->astral_count);
        if (!s->astral_symbols) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t k = 0; k < s->astral_count; k++)
            s->astral_symbols[k] = ++s->symbol_count;
    }
    s->root_next = PyMem_Calloc(s->symbol_count + 1, sizeof(int32_t));
    s->entries = PyMem_Calloc(total_entries + 1, sizeof(Entry));
    node_cap = (int32_t)(total_chars + 1);
    lists = PyMem_Calloc(node_cap, sizeof(EdgeList));
    outs = PyMem_Malloc(sizeof(int32_t) * node_cap);
    if (!s->root_next || !s->entries || !lists || !outs) {
        PyErr_NoMemory();
        goto done;
    }
    for (int32_t i = 0; i < node_cap; i++)
        outs[i] = -1;
    s->node_count = 1;
    /* Second pass: the trie, the entries and their groups. */
    for (Py_ssize_t p = 0; p < count; p++) {
        PyObject *item = PySequence_Fast_GET_ITEM(patterns, p);
        PyObject *key = PyTuple_GET_ITEM(item, 0);
        PyObject *entries = PyTuple_GET_ITEM(item, 3);
        long head = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
        long tail = PyLong_AsLong(PyTuple_GET_ITEM(item, 2));
        Py_ssize_t n = PyUnicode_GET_LENGTH(key);
        int kind = PyUnicode_KIND(key);
        const void *data = PyUnicode_DATA(key);
        s->pattern_length[p] = (int32_t)n;
        s->pattern_head[p] = (int8_t)head;
        s->pattern_tail[p] = (int8_t)tail;
        int32_t state = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            int32_t symbol = symbol_of(s, PyUnicode_READ(kind, data, i));
            int32_t next = -1;
            EdgeList *l = &lists[state];
            for (int32_t e = 0; e < l->count; e++)
                if (l->edges[e].symbol == symbol) {
                    next = l->edges[e].target;
                    break;
                }
            if (next < 0) {
                next = s->node_count++;
                if (edgelist_add(l, symbol, next) < 0) {
                    PyErr_NoMemory();
                    goto done;
                }
            }
            state = next;
        }
        if (outs[state] >= 0) {
            PyErr_Format(PyExc_ValueError, "pattern %R given twice", key);
            goto done;
        }
        outs[state] = (int32_t)p;
        s->entry_first[p] = s->entry_total;
        s->entry_count[p] = (int32_t)PyTuple_GET_SIZE(entries);
        for (Py_ssize_t e = 0; e < PyTuple_GET_SIZE(entries); e++) {
            PyObject *entry = PyTuple_GET_ITEM(entries, e);
            PyObject *term_id, *term, *group;
            if (!PyTuple_Check(entry)) {
                PyErr_SetString(PyExc_TypeError, "an entry is (term_id, term, group)");
                goto done;
            }
            if (!PyArg_ParseTuple(entry, "UUU;an entry is (term_id, term, group)", &term_id, &term,
                                  &group))
                goto done;
            PyObject *index = PyDict_GetItemWithError(groups, group);
            long group_index;
            if (index) {
                group_index = PyLong_AsLong(index);
            } else {
                if (PyErr_Occurred())
                    goto done;
                group_index = s->group_count++;
                PyObject *number = PyLong_FromLong(group_index);
                if (!number || PyDict_SetItem(groups, group, number) < 0) {
                    Py_XDECREF(number);
                    goto done;
                }
                Py_DECREF(number);
            }
            Entry *slot = &s->entries[s->entry_total++];
            Py_INCREF(term_id);
            Py_INCREF(term);
            slot->term_id = term_id;
            slot->term = term;
            slot->group = (int32_t)group_index;
        }
    }
    /* Flatten the edge lists, sorted by symbol, and the root's as a table. */
    s->nodes = PyMem_Calloc(s->node_count, sizeof(Node));
    s->edges = PyMem_Calloc(s->node_count + 1, sizeof(Edge));
    if (!s->nodes || !s->edges) {
        PyErr_NoMemory();
        goto done;
    }
    int32_t edge_at = 0;
    for (int32_t i = 0; i < s->node_count; i++) {
        EdgeList *l = &lists[i];
        if (l->count > 1)
            qsort(l->edges, l->count, sizeof(Edge), edge_order);
        s->nodes[i].first = edge_at;
        s->nodes[i].count = l->count;
        s->nodes[i].out = outs[i];
        s->nodes[i].dict = -1;
        if (l->count)
            memcpy(s->edges + edge_at, l->edges, sizeof(Edge) * l->count);
        edge_at += l->count;
    }
    for (int32_t e = 0; e < s->nodes[0].count; e++)
        s->root_next[s->edges[e].symbol] = s->edges[e].target;
    /* Fail and dictionary links, breadth first (outs is reused as the queue). */
    int32_t *queue = outs;
    int32_t head = 0, tail = 0;
    for (int32_t e = 0; e < s->nodes[0].count; e++) {
        int32_t v = s->edges[e].target;
        s->nodes[v].fail = 0;
        queue[tail++] = v;
    }
    while (head < tail) {
        int32_t u = queue[head++];
        const Node *un = &s->nodes[u];
        for (int32_t e = 0; e < un->count; e++) {
            int32_t symbol = s->edges[un->first + e].symbol;
            int32_t v = s->edges[un->first + e].target;
            int32_t f = un->fail, next = -1;
            while (1) {
                next = f ? child_of(s, f, symbol) : (s->root_next[symbol] ? s->root_next[symbol] : -1);
                if (next >= 0 || f == 0)
                    break;
                f = s->nodes[f].fail;
            }
            int32_t fail = (next >= 0 && next != v) ? next : 0;
            s->nodes[v].fail = fail;
            s->nodes[v].dict = s->nodes[fail].out >= 0 ? fail : s->nodes[fail].dict;
            queue[tail++] = v;
        }
    }
    /* The moves: a node's own edges, then those of its fail chain short of the root that
       it has no edge for (the chain is visited breadth first, so a node's fail is done
       before it). The scan then makes one look-up a character, not one per fail link. */
    {
        size_t cap = (size_t)s->node_count * 2 + 16, used = 0;
        s->moves = PyMem_Malloc(sizeof(Edge) * cap);
        if (!s->moves) {
            PyErr_NoMemory();
            goto done;
        }
        s->nodes[0].moves_first = 0;
        s->nodes[0].moves_count = 0;
        for (int32_t q = 0; q < tail; q++) {
            int32_t v = queue[q];
            Node *vn = &s->nodes[v];
            const Node *fn = &s->nodes[vn->fail];
            size_t need = used + (size_t)vn->count + (size_t)fn->moves_count;
            if (need > cap) {
                while (need > cap)
                    cap *= 2;
                Edge *grown = PyMem_Realloc(s->moves, sizeof(Edge) * cap);
                if (!grown) {
                    PyErr_NoMemory();
                    goto done;
                }
                s->moves = grown;
            }
            /* Merge two sorted lists, the node's own edges winning. */
            const Edge *own = s->edges + vn->first, *inherited = s->moves + fn->moves_first;
            int32_t a = 0, b = 0, first = (int32_t)used;
            while (a < vn->count || b < fn->moves_count) {
                if (b >= fn->moves_count ||
                    (a < vn->count && own[a].symbol <= inherited[b].symbol)) {
                    if (b < fn->moves_count && own[a].symbol == inherited[b].symbol)
                        b++;
                    s->moves[used++] = own[a++];
                } else {
                    s->moves[used++] = inherited[b++];
                }
            }
            vn->moves_first = first;
            vn->moves_count = (int32_t)used - first;
        }
    }
    s->taken_start = PyMem_Calloc(s->group_count + 1, sizeof(int32_t));
    s->taken_end = PyMem_Calloc(s->group_count + 1, sizeof(int32_t));
    s->taken_mark = PyMem_Calloc(s->group_count + 1, sizeof(uint32_t));
    if (!s->taken_start || !s->taken_end || !s->taken_mark) {
        PyErr_NoMemory();
        goto done;
    }
    /* Particles and suffixes. */
    if (max_particles < 0 || max_particles > 16) {
        PyErr_SetString(PyExc_ValueError, "max_particles must be within 0..16");
        goto done;
    }
    s->max_particles = max_particles;
    s->plain = PyMem_Calloc(0x10000 / 8, 1);
    if (!s->plain) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyUnicode_GET_LENGTH(plain); i++) {
        Py_UCS4 c = PyUnicode_READ_CHAR(plain, i);
        if (c < 0x80 || c >= 0x10000) {
            PyErr_SetString(PyExc_ValueError, "plain lists characters of the BMP above ASCII");
            goto done;
        }
        s->plain[c >> 3] |= (uint8_t)(1 << (c & 7));
    }
    if (expansions_arg && expansions_arg != Py_None &&
        scanner_set_expansions(s, expansions_arg) < 0)
        goto done;
    if (chartrie_init(&s->particles) < 0 || chartrie_init(&s->suffixes) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    PyObject *lists_of_words[2] = {particles_arg, suffixes_arg};
    CharTrie *tries[2] = {&s->particles, &s->suffixes};
    for (int w = 0; w < 2; w++) {
        PyObject *words = PySequence_Fast(lists_of_words[w], "particles and suffixes are sequences");
        if (!words)
            goto done;
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(words); i++) {
            PyObject *word = PySequence_Fast_GET_ITEM(words, i);
            if (!PyUnicode_Check(word) || PyUnicode_READY(word) < 0) {
                PyErr_SetString(PyExc_TypeError, "particles and suffixes are str");
                Py_DECREF(words);
                goto done;
            }
            if (chartrie_add(tries[w], word) < 0) {
                PyErr_NoMemory();
                Py_DECREF(words);
                goto done;
            }
        }
        Py_DECREF(words);
    }
    result = 0;
done:
    if (lists) {
        for (int32_t i = 0; i < node_cap; i++)
            PyMem_Free(lists[i].edges);
        PyMem_Free(lists);
    }
    PyMem_Free(outs);
    Py_XDECREF(groups);
    Py_DECREF(patterns);
    if (result < 0)
        scanner_free_memory(s);
    return result;
}

static int candidate_order(const void *a, const void *b) {
    const Candidate *x = a, *y = b;
    if (x->start != y->start)
        return (x->start > y->start) - (x->start < y->start);
    return (x->end < y->end) - (x->end > y->end); /* longer first */
}

static int add_candidate(Scanner *s, Py_ssize_t *found, Py_ssize_t start, Py_ssize_t end,
                         int32_t p) {
    if (*found == s->found_cap) {
        Py_ssize_t cap = s->found_cap ? s->found_cap * 2 : 64;
        Candidate *grown = PyMem_Realloc(s->found, sizeof(Candidate) * cap);
        if (!grown) {
            PyErr_NoMemory();
            return -1;
        }
        s->found = grown;
        s->found_cap = cap;
    }
    s->found[(*found)++] = (Candidate){(int32_t)start, (int32_t)end, p};
    return 0;
}

/* The scan for one string kind: inlined three times, so that the reads are direct. */
/* With fold set, the text is the original one: it is folded as it is read, and the scan
   gives up (returns -2) at the first character that folding would not leave one for one
   as a lower-case ASCII letter or itself (find() then folds it in Python). */
static inline __attribute__((always_inline)) Py_ssize_t
scan_kind(Scanner *s, const int kind, const void *data, Py_ssize_t size, const int fold) {
    Py_ssize_t found = 0;
    int32_t state = 0;
    const Node *nodes = s->nodes;
    Py_UCS4 last = 0;
    for (Py_ssize_t i = 0; i < size; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        if (fold) {
            if (c < 0x80) {
                if (c < 0x20 || c == 0x7F || (c == ' ' && last == ' '))
                    return -2;
                if (c - 'A' < 26u)
                    c += 32;
            } else if (c >= 0x10000 || !(s->plain[c >> 3] & (1 << (c & 7)))) {
                return -2;
            }
            last = c;
        }
        int32_t symbol = c < 0x10000 ? s->bmp_symbols[c] : symbol_of(s, c);
        if (!symbol) {
            state = 0; /* a character in no pattern: no match spans it */
            continue;
        }
        int32_t next = state ? move_of(s, state, symbol) : -1;
        state = next >= 0 ? next : s->root_next[symbol];
        int32_t hit = nodes[state].out >= 0 ? state : nodes[state].dict;
        for (; hit >= 0; hit = nodes[hit].dict) {
            int32_t p = nodes[hit].out;
            Py_ssize_t end = i + 1, start = end - s->pattern_length[p];
            int head = s->pattern_head[p], tail = s->pattern_tail[p];
            if (start && head) {
                Py_UCS4 before = read_folded(kind, data, start - 1);
                if (head == CLS_HANGUL ? is_hangul(before) : is_word(before))
                    continue;
            }
            if (end < size && tail) {
                /* Not yet checked when folding as it reads: a character folding changes
                   is found before the scan ends, and then nothing found counts. */
                Py_UCS4 after = read_folded(kind, data, end);
                /* A space or punctuation ends any pattern; only letters need a look. */
                if (after >= 0x1100 || after == '_' || Py_UNICODE_ISALNUM(after)) {
                    int ends;
                    if (tail == CLS_HANGUL)
                        ends = !is_hangul(after) || particle_chain(s, kind, data, size, end, 0);
                    else
                        ends = !is_word(after) || latin_suffix(s, kind, data, size, end);
                    if (!ends)
                        continue;
                }
            }
            if (add_candidate(s, &found, start, end, p) < 0)
                return -1;
        }
    }
    return found;
}

/* The candidates of a folded text (or, with fold, of an original text read folded) that
   stand as words, sorted; -1 on error, -2 when fold is set and the text needs folding. */
static Py_ssize_t scan_text(Scanner *s, PyObject *folded, int fold) {
    if (PyUnicode_READY(folded) < 0)
        return -1;
    Py_ssize_t size = PyUnicode_GET_LENGTH(folded);
    if (size >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "text too long");
        return -1;
    }
    if (!s->nodes)
        return fold ? -2 : 0;
    const void *data = PyUnicode_DATA(folded);
    Py_ssize_t found;
    switch (PyUnicode_KIND(folded)) {
    case PyUnicode_1BYTE_KIND:
        found = fold ? scan_kind(s, PyUnicode_1BYTE_KIND, data, size, 1)
                     : scan_kind(s, PyUnicode_1BYTE_KIND, data, size, 0);
        break;
    case PyUnicode_2BYTE_KIND:
        found = fold ? scan_kind(s, PyUnicode_2BYTE_KIND, data, size, 1)
                     : scan_kind(s, PyUnicode_2BYTE_KIND, data, size, 0);
        break;
    default:
        found = fold ? scan_kind(s, PyUnicode_4BYTE_KIND, data, size, 1)
                     : scan_kind(s, PyUnicode_4BYTE_KIND, data, size, 0);
        break;
    }
    if (found > 1)
        qsort(s->found, found, sizeof(Candidate), candidate_order);
    return found;
}

static int is_hit_type(PyTypeObject *hit_type) {
    if (PyType_IsSubtype(hit_type, &PyTuple_Type))
        return 1;
    PyErr_SetString(PyExc_TypeError, "hit_type must be a tuple type");
    return 0;
}

/* The offset map of a text that folding does not leave one for one, as
   monitor.rules.match._Offsets keeps it: segments (folded start, original start,
   original end, one for one), sorted by folded start. */
typedef struct {
    Py_ssize_t folded, start, end;
    int plain;
} Segment;

typedef struct {
    Segment *segments;
    Py_ssize_t count;
} OffsetMap;

static Py_ssize_t segment_at(const OffsetMap *map, Py_ssize_t at) {
    /* bisect_right over the folded starts, minus one */
    Py_ssize_t lo = 0, hi = map->count;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (at < map->segments[mid].folded)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo > 0 ? lo - 1 : 0;
}

/* Builds the output: hit_type given, Hit(term_id, start, end, text[start:end], term,
   field), with start and end mapped back to text when map is given; else (start, end,
   term_id, term) in the folded text. */
static PyObject *emit(Scanner *s, Py_ssize_t found, PyObject *text, PyObject *field,
                      PyTypeObject *hit_type, const OffsetMap *map, const int32_t *origin) {
    PyObject *out = PyList_New(0);
    if (!out)
        return NULL;
    if (++s->mark == 0) { /* wrapped: forget every mark */
        memset(s->taken_mark, 0, sizeof(uint32_t) * (s->group_count + 1));
        s->mark = 1;
    }
    for (Py_ssize_t k = 0; k < found; k++) {
        Candidate c = s->found[k];
        Entry *entry = s->entries + s->entry_first[c.pattern];
        for (int32_t e = 0; e < s->entry_count[c.pattern]; e++, entry++) {
            int32_t g = entry->group;
            if (s->taken_mark[g] == s->mark && s->taken_end[g] > c.start &&
                !(s->taken_start[g] == c.start && s->taken_end[g] == c.end))
                continue;
            s->taken_mark[g] = s->mark;
            s->taken_start[g] = c.start;
            s->taken_end[g] = c.end;
            PyObject *item;
            if (hit_type) {
                Py_ssize_t first = c.start, last = c.end;
                if (origin) { /* the original character each folded one comes from */
                    first = origin[c.start];
                    last = origin[c.end - 1] + 1;
                } else if (map) {
                    const Segment *seg = &map->segments[segment_at(map, c.start)];
                    first = seg->plain ? seg->start + (c.start - seg->folded) : seg->start;
                    seg = &map->segments[segment_at(map, c.end - 1)];
                    last = seg->plain ? seg->start + (c.end - seg->folded) : seg->end;
                    first = first < 0 ? 0 : first;
                    last = last < first ? first : last;
                }
                item = hit_type->tp_alloc(hit_type, 6);
                if (!item)
                    goto fail;
                PyObject *start = PyLong_FromSsize_t(first), *end = PyLong_FromSsize_t(last);
                PyObject *surface = PyUnicode_Substring(text, first, last);
                if (!start || !end || !surface) {
                    Py_XDECREF(start);
                    Py_XDECREF(end);
                    Py_XDECREF(surface);
                    Py_DECREF(item);
                    goto fail;
                }
                Py_INCREF(entry->term_id);
                Py_INCREF(entry->term);
                Py_INCREF(field);
                PyTuple_SET_ITEM(item, 0, entry->term_id);
                PyTuple_SET_ITEM(item, 1, start);
                PyTuple_SET_ITEM(item, 2, end);
                PyTuple_SET_ITEM(item, 3, surface);
                PyTuple_SET_ITEM(item, 4, entry->term);
                PyTuple_SET_ITEM(item, 5, field);
                /* Strings, ints and None cannot make a cycle: spare the collector. */
                if (field == Py_None || PyUnicode_CheckExact(field))
                    PyObject_GC_UnTrack(item);
            } else {
                item = Py_BuildValue("(iiOO)", c.start, c.end, entry->term_id, entry->term);
                if (!item)
                    goto fail;
            }
            int appended = PyList_Append(out, item);
            Py_DECREF(item);
            if (appended < 0)
                goto fail;
        }
    }
    return out;
fail:
    Py_DECREF(out);
    return NULL;
}

/* hits(folded, text, field, hit_type): for a text that folds one for one. */
static PyObject *Scanner_hits_impl(Scanner *s, PyObject *args) {
    PyObject *folded, *text, *field;
    PyTypeObject *hit_type;
    if (!PyArg_ParseTuple(args, "UUOO!", &folded, &text, &field, &PyType_Type, &hit_type))
        return NULL;
    if (!is_hit_type(hit_type))
        return NULL;
    if (PyUnicode_READY(text) < 0)
        return NULL;
    if (PyUnicode_GET_LENGTH(folded) != PyUnicode_GET_LENGTH(text)) {
        PyErr_SetString(PyExc_ValueError, "folded and text differ in length");
        return NULL;
    }
    Py_ssize_t found = scan_text(s, folded, 0);
    if (found < 0)
        return NULL;
    return emit(s, found, text, field, hit_type, NULL, NULL);
}

/* mapped(folded, text, field, hit_type, segments): the hits of a text that folding does
   not leave one for one; segments is the offset map's list of (folded start, original
   start, original end, one for one). */
static PyObject *Scanner_mapped_impl(Scanner *s, PyObject *args) {
    PyObject *folded, *text, *field, *segments;
    PyTypeObject *hit_type;
    if (!PyArg_ParseTuple(args, "UUOO!O!", &folded, &text, &field, &PyType_Type, &hit_type,
                          &PyList_Type, &segments))
        return NULL;
    if (!is_hit_type(hit_type))
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(segments), size = PyUnicode_GET_LENGTH(text);
    if (count == 0) {
        PyErr_SetString(PyExc_ValueError, "an offset map has at least one segment");
        return NULL;
    }
    OffsetMap map = {PyMem_Malloc(sizeof(Segment) * count), count};
    if (!map.segments)
        return PyErr_NoMemory();
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        Segment *seg = &map.segments[i];
        int plain;
        if (!PyTuple_Check(PyList_GET_ITEM(segments, i))) {
            PyErr_SetString(PyExc_TypeError, "a segment is (int, int, int, bool)");
            goto done;
        }
        if (!PyArg_ParseTuple(PyList_GET_ITEM(segments, i), "nnnp;a segment is (int, int, int, bool)",
                              &seg->folded, &seg->start, &seg->end, &plain))
            goto done;
        seg->plain = plain;
        if (seg->start < 0 || seg->start > size || seg->end < seg->start || seg->end > size ||
            (i && seg->folded < map.segments[i - 1].folded)) {
            PyErr_SetString(PyExc_ValueError, "segments do not map into the text");
            goto done;
        }
    }
    Py_ssize_t found = scan_text(s, folded, 0);
    if (found < 0)
        goto done;
    result = emit(s, found, text, field, hit_type, &map, NULL);
done:
    PyMem_Free(map.segments);
    return result;
}

/* find() for a text with characters that fold to others: folded here into a buffer of
   its own, each folded character with the original one it comes from (an expanded
   character's folded ones all come from it, so a hit in them spans all of it, as the
   Python path's offset map gives it). None if the text has anything else to fold. */
static PyObject *find_expanded(Scanner *s, PyObject *text, PyObject *field,
                               PyTypeObject *hit_type) {
    Py_ssize_t size = PyUnicode_GET_LENGTH(text), cap = size + 16, n = 0;
    int kind = PyUnicode_KIND(text);
    const void *data = PyUnicode_DATA(text);
    Py_UCS4 *folded = PyMem_Malloc(sizeof(Py_UCS4) * cap);
    int32_t *origin = PyMem_Malloc(sizeof(int32_t) * cap);
    PyObject *result = NULL;
    if (!folded || !origin) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < size; i++) {
        Py_UCS4 c = PyUnicode_READ(kind, data, i);
        const Py_UCS4 *from = &c;
        Py_ssize_t length = 1;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7F || (c == ' ' && n && folded[n - 1] == ' '))
                goto plain_python;
            if (c - 'A' < 26u)
                c += 32;
        } else if (c >= 0x10000 || !(s->plain[c >> 3] & (1 << (c & 7)))) {
            Py_ssize_t e = c < 0x10000 ? expansion_of(s, c) : -1;
            if (e < 0)
                goto plain_python;
            from = s->expansion_data + s->expansion_first[e];
            length = s->expansion_length[e];
        }
        if (n + length > cap) {
            cap = (n + length) * 2;
            Py_UCS4 *grown = PyMem_Realloc(folded, sizeof(Py_UCS4) * cap);
            if (!grown) {
                PyErr_NoMemory();
                goto done;
            }
            folded = grown;
            int32_t *grown_origin = PyMem_Realloc(origin, sizeof(int32_t) * cap);
            if (!grown_origin) {
                PyErr_NoMemory();
                goto done;
            }
            origin = grown_origin;
        }
        for (Py_ssize_t k = 0; k < length; k++) {
            folded[n] = from[k];
            origin[n++] = (int32_t)i;
        }
    }
    if (n >= INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "text too long");
        goto done;
    }
    {
        Py_ssize_t found = s->nodes ? scan_kind(s, PyUnicode_4BYTE_KIND, folded, n, 0) : 0;
        if (found < 0)
            goto done;
        if (found > 1)
            qsort(s->found, found, sizeof(Candidate), candidate_order);
        result = emit(s, found, text, field, hit_type, NULL, origin);
    }
    goto done;
plain_python:
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(folded);
    PyMem_Free(origin);
    return result;
}

/* find(text, field, hit_type): the hits of an original text that folding leaves one for
   one as lower-case ASCII or itself, read folded; None for any other text. */
static PyObject *Scanner_find_impl(Scanner *s, PyObject *args) {
    PyObject *text, *field;
    PyTypeObject *hit_type;
    if (!PyArg_ParseTuple(args, "UOO!", &text, &field, &PyType_Type, &hit_type))
        return NULL;
    if (!is_hit_type(hit_type))
        return NULL;
    Py_ssize_t found = scan_text(s, text, 1);
    if (found == -2 && s->expansion_count)
        return find_expanded(s, text, field, hit_type);
    if (found == -2)
        Py_RETURN_NONE;
    if (found < 0)
        return NULL;
    return emit(s, found, text, field, hit_type, NULL, NULL);
}

/* spans(folded): [(start, end, term_id, term)], offsets in the folded text. */
static PyObject *Scanner_spans_impl(Scanner *s, PyObject *folded) {
    if (!PyUnicode_Check(folded)) {
        PyErr_SetString(PyExc_TypeError, "spans() takes a str");
        return NULL;
    }
    Py_ssize_t found = scan_text(s, folded, 0);
    if (found < 0)
        return NULL;
    return emit(s, found, NULL, NULL, NULL, NULL, NULL);
}

static int enter(Scanner *s) {
    if (s->busy) {
        PyErr_SetString(PyExc_RuntimeError, "a Scanner was called from within its own call");
        return -1;
    }
    s->busy = 1;
    return 0;
}

#define GUARDED(call)          \
    do {                       \
        if (enter(s) < 0)      \
            return NULL;       \
        PyObject *out = (call); \
        s->busy = 0;           \
        return out;            \
    } while (0)

static PyObject *Scanner_hits(Scanner *s, PyObject *args) { GUARDED(Scanner_hits_impl(s, args)); }
static PyObject *Scanner_mapped(Scanner *s, PyObject *args) {
    GUARDED(Scanner_mapped_impl(s, args));
}
static PyObject *Scanner_find(Scanner *s, PyObject *args) { GUARDED(Scanner_find_impl(s, args)); }
static PyObject *Scanner_spans(Scanner *s, PyObject *folded) {
    GUARDED(Scanner_spans_impl(s, folded));
}

static PyMethodDef Scanner_methods[] = {
    {"find", (PyCFunction)Scanner_find, METH_VARARGS,
     "find(text, field, hit_type): the hits of a text folding leaves alone, else None"},
    {"hits", (PyCFunction)Scanner_hits, METH_VARARGS,
     "hits(folded, text, field, hit_type): the hits of a text that folds one for one"},
    {"mapped", (PyCFunction)Scanner_mapped, METH_VARARGS,
     "mapped(folded, text, field, hit_type, segments): the hits, offsets mapped to text"},
    {"spans", (PyCFunction)Scanner_spans, METH_O,
     "spans(folded): (start, end, term_id, term) of every hit in a folded text"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ScannerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "monitor.rules._scan.Scanner",
    .tp_basicsize = sizeof(Scanner),
    .tp_dealloc = (destructor)Scanner_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Scanner(patterns, particles, suffixes, max_particles, plain): see the module source",
    .tp_methods = Scanner_methods,
    .tp_init = (initproc)Scanner_init,
    .tp_new = PyType_GenericNew,
};

static struct PyModuleDef scan_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "monitor.rules._scan",
    .m_doc = "The matcher's scan, word ends and overlaps in C (see monitor/rules/match.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__scan(void) {
    if (PyType_Ready(&ScannerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&scan_module);
    if (!m)
        return NULL;
    Py_INCREF(&ScannerType);
    if (PyModule_AddObject(m, "Scanner", (PyObject *)&ScannerType) < 0) {
        Py_DECREF(&ScannerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
