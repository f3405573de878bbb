/* Single-pass TFRecord scanner for TensorBoard event files (optional; see tfscan.py).
 *
 * scan(buf, start) walks the records from `start`: checks the masked CRC32C of every length
 * and of every payload, decodes the common scalar event (wall_time, step, summary of values
 * that each hold a tag and a simple_value) and groups its points by tag. Anything else (file
 * version, tensors, text, hparams, images...) is left to the Python protobuf path, by record
 * index. Framing follows tensorboard.py's walk exactly: a record cut by the end of the buffer
 * is not consumed; a header whose length CRC fails is corrupt, and the walk resynchronises at
 * the next position whose header checks.
 *
 * Returns (consumed, corrupt, bad, bad_at, misfits, groups):
 *   consumed  bytes of buf fully walked (from 0)
 *   corrupt   list of positions where a corrupt header starts
 *   bad       list of record indices whose payload CRC fails
 *   bad_at    their payload offsets
 *   misfits   buffer: int64 triples (record index, payload offset, payload length) of the
 *             records for the protobuf path
 *   groups    list of (tag, idx, steps, values, walls): str, then read-only buffers (Owned:
 *             the scanner's own memory, no copy) of int64/int64/f64/f64
 *
 * CRC32C: SSE4.2 crc32 instructions when the CPU has them (checked at run time), otherwise a
 * slicing-by-8 table. The walk runs without the GIL (the app's UI thread goes on meanwhile).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define HAVE_X86 1
#endif

#define MAX_RECORD (256ULL * 1024 * 1024)
#define MASK_DELTA 0xA282EAD8u
#define KEEP_TAIL (1 << 16)

/* ---------------------------------------------------------------- CRC32C */

static uint32_t crc_table[8][256];
static int use_hw = 0;

static void crc_init(void) {
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ ((c & 1) ? 0x82F63B78u : 0);
        crc_table[0][b] = c;
    }
    for (uint32_t b = 0; b < 256; b++)
        for (int t = 1; t < 8; t++)
            crc_table[t][b] = (crc_table[t - 1][b] >> 8) ^ crc_table[0][crc_table[t - 1][b] & 0xFF];
#ifdef HAVE_X86
    __builtin_cpu_init();
    use_hw = __builtin_cpu_supports("sse4.2");
#endif
}

static uint32_t crc_sw(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= c; /* little-endian hosts only: checked at import in tfscan.py */
        c = crc_table[7][w & 0xFF] ^ crc_table[6][(w >> 8) & 0xFF] ^ crc_table[5][(w >> 16) & 0xFF] ^
            crc_table[4][(w >> 24) & 0xFF] ^ crc_table[3][(w >> 32) & 0xFF] ^
            crc_table[2][(w >> 40) & 0xFF] ^ crc_table[1][(w >> 48) & 0xFF] ^ crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xFF];
    return c ^ 0xFFFFFFFFu;
}

#ifdef HAVE_X86
__attribute__((target("sse4.2"))) static uint32_t crc_hw(const uint8_t *p, size_t n) {
    uint64_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = _mm_crc32_u8(c32, *p++);
    return c32 ^ 0xFFFFFFFFu;
}
#endif

static inline uint32_t crc32c(const uint8_t *p, size_t n) {
#ifdef HAVE_X86
    if (use_hw) return crc_hw(p, n);
#endif
    return crc_sw(p, n);
}

static inline uint32_t masked_crc(const uint8_t *p, size_t n) {
    uint32_t c = crc32c(p, n);
    return ((c >> 15) | (c << 17)) + MASK_DELTA;
}

static inline uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* ---------------------------------------------------------------- growable arrays */

typedef struct { char *data; size_t len, cap; } Buf;

static int buf_grow(Buf *b, size_t need) {
    size_t cap = b->cap ? b->cap * 2 : 4096;
    while (cap < need) cap *= 2;
    char *d = PyMem_RawRealloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

/* append one 8-byte item (the only size used) */
static inline int push8(Buf *b, const void *item) {
    if (b->len + 8 > b->cap && buf_grow(b, b->len + 8) < 0) return -1;
    memcpy(b->data + b->len, item, 8);
    b->len += 8;
    return 0;
}

static void buf_free(Buf *b) { PyMem_RawFree(b->data); b->data = NULL; b->len = b->cap = 0; }

/* A read-only buffer that owns a Buf's memory: handed to Python as it is (np.frombuffer reads
 * it in place), where a bytes object would copy every decoded point once more. */
typedef struct { PyObject_HEAD char *data; Py_ssize_t len; } Owned;

static int owned_getbuffer(PyObject *o, Py_buffer *view, int flags) {
    Owned *b = (Owned *)o;
    return PyBuffer_FillInfo(view, o, b->data ? b->data : (char *)"", b->len, 1, flags);
}

static void owned_dealloc(PyObject *o) {
    PyMem_RawFree(((Owned *)o)->data);
    Py_TYPE(o)->tp_free(o);
}

static PyBufferProcs owned_as_buffer = {owned_getbuffer, NULL};

static PyTypeObject OwnedType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "_tfscan.Owned",
    .tp_basicsize = sizeof(Owned),
    .tp_dealloc = owned_dealloc,
    .tp_as_buffer = &owned_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "decoded points: a read-only buffer over memory the scanner filled",
};

/* The Buf's memory as an Owned buffer (the Buf is left empty); NULL on failure (the Buf
 * keeps its memory, freed with it). */
static PyObject *buf_take(Buf *b) {
    Owned *o = PyObject_New(Owned, &OwnedType);
    if (!o) return NULL;
    if (b->data && b->cap > b->len + 65536) { /* give back the growth slack of a big buffer */
        char *d = PyMem_RawRealloc(b->data, b->len ? b->len : 1);
        if (d) b->data = d;
    }
    o->data = b->data;
    o->len = (Py_ssize_t)b->len;
    b->data = NULL;
    b->len = b->cap = 0;
    return (PyObject *)o;
}

/* ---------------------------------------------------------------- tag groups */

typedef struct {
    const uint8_t *tag; /* points into the caller's buffer (alive during the scan) */
    size_t tag_len;
    uint64_t hash;
    int32_t next; /* the group whose point came after this one's last time (-1: none yet) */
    Buf idx, steps, values, walls;
} Group;

typedef struct {
    Group *groups;
    size_t n, cap;
    int32_t *slots; /* open addressing: group index + 1, 0 = empty */
    size_t nslots;
} Groups;

/* A cheap hash of a tag: its length, first and last 8 bytes (tags of one run differ there). */
static inline uint64_t tag_hash(const uint8_t *p, size_t n) {
    uint64_t a = 0, b = 0;
    if (n >= 8) {
        a = rd64(p);
        b = rd64(p + n - 8);
    } else {
        memcpy(&a, p, n);
    }
    uint64_t h = (a ^ (b * 0x9E3779B97F4A7C15ULL) ^ n) * 0xFF51AFD7ED558CCDULL;
    return h ^ (h >> 29);
}

static int groups_rehash(Groups *g, size_t nslots) {
    int32_t *slots = PyMem_RawCalloc(nslots, sizeof(int32_t));
    if (!slots) return -1;
    for (size_t i = 0; i < g->n; i++) {
        size_t s = g->groups[i].hash & (nslots - 1);
        while (slots[s]) s = (s + 1) & (nslots - 1);
        slots[s] = (int32_t)(i + 1);
    }
    PyMem_RawFree(g->slots);
    g->slots = slots;
    g->nslots = nslots;
    return 0;
}

static Group *groups_get(Groups *g, const uint8_t *tag, size_t len) {
    uint64_t h = tag_hash(tag, len);
    size_t s = h & (g->nslots - 1);
    while (g->slots[s]) {
        Group *gr = &g->groups[g->slots[s] - 1];
        if (gr->hash == h && gr->tag_len == len && memcmp(gr->tag, tag, len) == 0) return gr;
        s = (s + 1) & (g->nslots - 1);
    }
    if ((g->n + 1) * 2 > g->nslots) {
        if (groups_rehash(g, g->nslots * 2) < 0) return NULL;
        s = h & (g->nslots - 1);
        while (g->slots[s]) s = (s + 1) & (g->nslots - 1);
    }
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 16;
        Group *ng = PyMem_RawRealloc(g->groups, cap * sizeof(Group));
        if (!ng) return NULL;
        g->groups = ng;
        g->cap = cap;
    }
    Group *gr = &g->groups[g->n];
    memset(gr, 0, sizeof(Group));
    gr->next = -1;
    gr->tag = tag;
    gr->tag_len = len;
    gr->hash = h;
    g->slots[s] = (int32_t)(++g->n);
    return gr;
}

/* The group that followed group `last` the time before, if it is this tag's: a writer logs its
 * tags in the same order at every step, so most points are placed without hashing their tag. */
static inline Group *predicted(Groups *g, int32_t last, const uint8_t *tag, size_t len) {
    if (last < 0) return NULL;
    int32_t nx = g->groups[last].next;
    if (nx < 0) return NULL;
    Group *gr = &g->groups[nx];
    return gr->tag_len == len && memcmp(gr->tag, tag, len) == 0 ? gr : NULL;
}

static void groups_free(Groups *g) {
    for (size_t i = 0; i < g->n; i++) {
        buf_free(&g->groups[i].idx);
        buf_free(&g->groups[i].steps);
        buf_free(&g->groups[i].values);
        buf_free(&g->groups[i].walls);
    }
    PyMem_RawFree(g->groups);
    PyMem_RawFree(g->slots);
}

/* ---------------------------------------------------------------- protobuf decoding */

static inline int varint(const uint8_t **pp, const uint8_t *end, uint64_t *out) {
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int k = 0; k < 10; k++) {
        if (p >= end) return -1;
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7F) << (7 * k);
        if (!(b & 0x80)) {
            *pp = p;
            *out = v;
            return 0;
        }
    }
    return -1;
}

#define MAX_VALUES 64

typedef struct { const uint8_t *tag; size_t tag_len; float value; } Point;

/* One Summary.Value: a tag and a simple_value, nothing else. 0 ok, -1 misfit. */
static int parse_value(const uint8_t *p, const uint8_t *end, Point *pt) {
    int has_tag = 0, has_value = 0;
    while (p < end) {
        uint64_t key, len;
        if (varint(&p, end, &key) < 0) return -1;
        if (key == 0x0A) { /* tag */
            if (varint(&p, end, &len) < 0 || len > (uint64_t)(end - p)) return -1;
            pt->tag = p;
            pt->tag_len = (size_t)len;
            p += len;
            has_tag = 1;
        } else if (key == 0x15) { /* simple_value */
            if (end - p < 4) return -1;
            uint32_t bits = rd32(p);
            memcpy(&pt->value, &bits, 4);
            p += 4;
            has_value = 1;
        } else {
            return -1;
        }
    }
    (void)has_tag;
    return has_value ? 0 : -1;
}

/* An Event of wall_time, step and a summary of scalar values, or an event that holds no
 * summary (file version, graph, log message...). Returns the number of points (>= 0) or -1
 * for a misfit (a summary value that is not a plain scalar, an unknown field, malformed bytes:
 * the protobuf path decodes it). */
static int parse_event(const uint8_t *p, const uint8_t *end, double *wall, int64_t *step, Point *pts) {
    int n = 0;
    int has_summary = 0; /* a second summary field would be merged by protobuf: a misfit */
    *wall = 0.0;
    *step = 0;
    while (p < end) {
        uint64_t key, v, len;
        if (varint(&p, end, &key) < 0) return -1;
        if (key == 0x09) { /* wall_time */
            if (end - p < 8) return -1;
            uint64_t bits = rd64(p);
            memcpy(wall, &bits, 8);
            p += 8;
        } else if (key == 0x10) { /* step */
            if (varint(&p, end, &v) < 0) return -1;
            *step = (int64_t)v;
        } else if (key == 0x2A) { /* summary */
            if (varint(&p, end, &len) < 0 || len > (uint64_t)(end - p)) return -1;
            if (has_summary) return -1; /* merged summaries: leave to protobuf */
            has_summary = 1;
            const uint8_t *q = p, *qend = p + len;
            while (q < qend) {
                uint64_t k2, l2;
                if (varint(&q, qend, &k2) < 0 || k2 != 0x0A) return -1;
                if (varint(&q, qend, &l2) < 0 || l2 > (uint64_t)(qend - q)) return -1;
                if (n == MAX_VALUES) return -1;
                pts[n].tag = (const uint8_t *)"";
                pts[n].tag_len = 0;
                if (parse_value(q, q + l2, &pts[n]) < 0) return -1;
                n++;
                q += l2;
            }
            p = qend;
        } else if (key == 0x1A || key == 0x22 || key == 0x32 || key == 0x3A || key == 0x42 ||
                   key == 0x4A || key == 0x52) {
            /* file_version, graph_def, log_message, session_log, tagged_run_metadata,
               meta_graph_def, source_metadata: no scalars in them (the protobuf path reads
               nothing from them either) */
            if (varint(&p, end, &len) < 0 || len > (uint64_t)(end - p)) return -1;
            p += len;
        } else {
            return -1;
        }
    }
    return n;
}

/* ---------------------------------------------------------------- the walk */

static Py_ssize_t resync(const uint8_t *b, Py_ssize_t n, Py_ssize_t pos) {
    for (; pos + 12 <= n; pos++)
        if (rd64(b + pos) <= MAX_RECORD && masked_crc(b + pos, 8) == rd32(b + pos + 8)) return pos;
    return -1;
}

/* The walk itself: no Python object touched, so it runs without the GIL. 0 ok, -1 no memory. */
static int walk(const uint8_t *b, Py_ssize_t n, Py_ssize_t pos, Py_ssize_t *consumed, Buf *corrupt, Buf *bad,
                Buf *misfits, Groups *g) {
    Point pts[MAX_VALUES];
    int64_t idx = 0;
    int32_t last = -1; /* the group of the last point */
    for (;;) {
        if (pos + 12 > n) { *consumed = pos; return 0; }
        uint64_t length = rd64(b + pos);
        if (length > MAX_RECORD || masked_crc(b + pos, 8) != rd32(b + pos + 8)) {
            int64_t at = pos;
            if (push8(corrupt, &at) < 0) return -1;
            Py_ssize_t nxt = resync(b, n, pos + 1);
            if (nxt < 0) { /* no valid header after the bad bytes yet: keep the tail unless long */
                *consumed = (n - pos < KEEP_TAIL) ? pos : n - 12;
                return 0;
            }
            pos = nxt;
            continue;
        }
        if ((uint64_t)(n - pos) < 16 + length) { *consumed = pos; return 0; } /* torn: wait */
        const uint8_t *payload = b + pos + 12;
        int64_t off = pos + 12, len = (int64_t)length;
        if (masked_crc(payload, length) != rd32(payload + length)) {
            if (push8(bad, &idx) < 0 || push8(bad, &off) < 0) return -1;
        } else {
            double wall;
            int64_t step;
            int k = parse_event(payload, payload + length, &wall, &step, pts);
            if (k < 0 && (push8(misfits, &idx) < 0 || push8(misfits, &off) < 0 || push8(misfits, &len) < 0))
                return -1;
            for (int i = 0; i < k; i++) {
                Group *gr = predicted(g, last, pts[i].tag, pts[i].tag_len);
                if (!gr) gr = groups_get(g, pts[i].tag, pts[i].tag_len);
                if (gr) {
                    int32_t at = (int32_t)(gr - g->groups);
                    if (last >= 0) g->groups[last].next = at;
                    last = at;
                }
                double value = (double)pts[i].value;
                if (!gr || push8(&gr->idx, &idx) < 0 || push8(&gr->steps, &step) < 0 ||
                    push8(&gr->values, &value) < 0 || push8(&gr->walls, &wall) < 0)
                    return -1;
            }
        }
        idx++;
        pos += 16 + (Py_ssize_t)length;
    }
}

/* int64 items of a Buf, every `stride`-th from `first`, as a list of ints */
static PyObject *buf_list(Buf *b, size_t first, size_t stride) {
    PyObject *list = PyList_New(0);
    const int64_t *v = (const int64_t *)b->data;
    for (size_t i = first; list && i < b->len / 8; i += stride) {
        PyObject *o = PyLong_FromLongLong(v[i]);
        if (!o || PyList_Append(list, o) < 0) { Py_XDECREF(o); Py_CLEAR(list); break; }
        Py_DECREF(o);
    }
    return list;
}

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start = 0, consumed = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*|n", &view, &start)) return NULL;
    PyObject *groups_dict = NULL, *result = NULL, *corrupt = NULL, *bad = NULL, *bad_at = NULL;
    Buf corrupt_b = {0}, bad_b = {0}, misfits = {0};
    Groups g = {0};
    int failed = groups_rehash(&g, 64) < 0;
    if (!failed) {
        Py_BEGIN_ALLOW_THREADS
        failed = walk(view.buf, view.len, start < 0 ? 0 : start, &consumed, &corrupt_b, &bad_b, &misfits, &g) < 0;
        Py_END_ALLOW_THREADS
    }
    if (failed) goto done;
    corrupt = buf_list(&corrupt_b, 0, 1);
    bad = buf_list(&bad_b, 0, 2);
    bad_at = buf_list(&bad_b, 1, 2);
    if (!corrupt || !bad || !bad_at) goto done;
    groups_dict = PyList_New(0); /* [(tag, idx, steps, values, walls)], first-seen order */
    if (!groups_dict) goto done;
    for (size_t i = 0; i < g.n; i++) {
        Group *gr = &g.groups[i];
        PyObject *tag = PyUnicode_DecodeUTF8((const char *)gr->tag, (Py_ssize_t)gr->tag_len, "replace");
        if (!tag) goto done;
        PyObject *item = Py_BuildValue("(NNNNN)", tag, buf_take(&gr->idx), buf_take(&gr->steps),
                                       buf_take(&gr->values), buf_take(&gr->walls));
        if (!item) goto done;
        int r = PyList_Append(groups_dict, item);
        Py_DECREF(item);
        if (r < 0) goto done;
    }
    result = Py_BuildValue("(nOOONO)", consumed, corrupt, bad, bad_at, buf_take(&misfits), groups_dict);

done:
    if (failed && !PyErr_Occurred()) PyErr_NoMemory();
    PyBuffer_Release(&view);
    Py_XDECREF(corrupt);
    Py_XDECREF(bad);
    Py_XDECREF(bad_at);
    Py_XDECREF(groups_dict);
    buf_free(&corrupt_b);
    buf_free(&bad_b);
    buf_free(&misfits);
    groups_free(&g);
    return result;
}

static PyObject *masked_crc32c(PyObject *self, PyObject *args) {
    Py_buffer view;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    uint32_t c = masked_crc(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static PyObject *crc32c_py(PyObject *self, PyObject *args) {
    Py_buffer view;
    int table = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*|p", &view, &table)) return NULL;
    uint32_t c = table ? crc_sw(view.buf, (size_t)view.len) : crc32c(view.buf, (size_t)view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static PyObject *hardware(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    return PyBool_FromLong(use_hw);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS, "scan(buf, start=0) -> (consumed, corrupt, bad, bad_at, misfits, groups)"},
    {"masked_crc32c", masked_crc32c, METH_VARARGS, "masked CRC32C of a buffer (TFRecord framing)"},
    {"crc32c", crc32c_py, METH_VARARGS, "crc32c(buf, table=False): CRC32C; table=True forces the table code"},
    {"hardware", hardware, METH_NOARGS, "whether the SSE4.2 crc32 instruction is used"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, .m_name = "_tfscan", .m_doc = NULL, .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC PyInit__tfscan(void) {
    crc_init();
    if (PyType_Ready(&OwnedType) < 0) return NULL;
    return PyModule_Create(&module);
}
