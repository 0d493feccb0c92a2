/*
 * fakenvml: a stand-in libnvidia-ml.so.1 for tests and demos on machines without a GPU.
 *
 * The real pynvml bindings load this library exactly as they load NVIDIA's. What the GPUs
 * report comes from a scenario file named by $FAKENVML_SCENARIO, written by the Python
 * side (fakenvml/scenario.py, which documents the line format). The file is re-read
 * whenever its inode, size or mtime changes, checked on every call, so a test can change
 * the GPUs while the program under test runs. Structs and return codes follow nvml.h as
 * pynvml declares them; only the functions dlcourse uses are exported.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define API __attribute__((visibility("default")))

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NOT_FOUND = 6, NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_TIMEOUT = 10, NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25, NVML_ERROR_UNKNOWN = 999,
};
#define NVML_VALUE_NOT_AVAILABLE_ULL 0xFFFFFFFFFFFFFFFFULL
#define NVML_INSTANCE_ID_NONE 0xFFFFFFFFu /* gpuInstanceId/computeInstanceId without MIG */
#define NVML_MEMORY_V2 0x02000028u        /* nvmlMemory_v2: sizeof(nvmlMemory_v2_t) | 2 << 24 */
#define EVENT_SINGLE_BIT_ECC 0x1ULL
#define EVENT_DOUBLE_BIT_ECC 0x2ULL
#define EVENT_PSTATE 0x4ULL
#define EVENT_XID 0x8ULL
#define EVENT_CLOCK 0x10ULL
#define CLOCKS_EVENT_REASONS_ALL 0x1FFULL
#define MAX_GPUS 64

/* Structs as nvml.h (and pynvml's ctypes mirrors) lay them out. */
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct {
    unsigned version;
    unsigned long long total, reserved, free, used;
} nvmlMemory_v2_t;
typedef struct { unsigned gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned pid; unsigned long long usedGpuMemory; } nvmlProcessInfo_v1_t;
typedef struct {
    unsigned pid;
    unsigned long long usedGpuMemory;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_v2_t; /* also the _v3 functions' nvmlProcessInfo_t */
typedef struct {
    unsigned pid;
    unsigned long long timeStamp;
    unsigned smUtil, memUtil, encUtil, decUtil;
} nvmlProcessUtilizationSample_t;
typedef struct {
    char busIdLegacy[16];
    unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
    char busId[32];
} nvmlPciInfo_t;
typedef struct nvmlDevice_st { unsigned index; } *nvmlDevice_t;
typedef struct {
    nvmlDevice_t device;
    unsigned long long eventType, eventData;
    unsigned gpuInstanceId, computeInstanceId;
} nvmlEventData_t;
typedef struct nvmlEventSet_st { unsigned long long types[MAX_GPUS]; } *nvmlEventSet_t;

/* Getter groups a scenario can mark not supported (Gpu.not_supported in Python). */
enum {
    F_UTILIZATION = 1 << 0, F_MEMORY = 1 << 1, F_TEMPERATURE = 1 << 2, F_POWER = 1 << 3,
    F_POWER_LIMIT = 1 << 4, F_CLOCKS = 1 << 5, F_CLOCKS_EVENT_REASONS = 1 << 6, F_ECC = 1 << 7,
    F_PROCESSES = 1 << 8, F_PROCESS_UTILIZATION = 1 << 9, F_EVENTS = 1 << 10, F_PCI = 1 << 11,
};
static const struct { const char *name; unsigned bit; } feature_names[] = {
    {"utilization", F_UTILIZATION}, {"memory", F_MEMORY}, {"temperature", F_TEMPERATURE},
    {"power", F_POWER}, {"power_limit", F_POWER_LIMIT}, {"clocks", F_CLOCKS},
    {"clocks_event_reasons", F_CLOCKS_EVENT_REASONS}, {"ecc", F_ECC},
    {"processes", F_PROCESSES}, {"process_utilization", F_PROCESS_UTILIZATION},
    {"events", F_EVENTS}, {"pci", F_PCI},
};

struct process {
    unsigned pid, sm_util, mem_util, graphics;
    unsigned long long used_memory; /* NVML_VALUE_NOT_AVAILABLE_ULL when unknown */
};
struct xid { unsigned long long id, xid; };
struct gpu {
    char uuid[96], name[96];
    unsigned util_gpu, util_memory, temperature, power_mw, power_limit_mw, clock_sm, clock_mem;
    unsigned long long memory_total, memory_used, clocks_event_reasons, ecc_corrected,
        ecc_uncorrected;
    unsigned unsupported, lost;
    struct process *procs;
    size_t nprocs;
    struct xid *xids;
    size_t nxids;
};
struct scenario {
    char driver_version[80];
    int cuda_version;
    nvmlReturn_t init_error;
    struct gpu gpus[MAX_GPUS];
    unsigned ngpus;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned init_count;
static struct scenario *current; /* last scenario that parsed; kept when a re-read fails */
static char scenario_path[4096];
static struct stat loaded_stat;
static struct nvmlDevice_st handles[MAX_GPUS];
static unsigned long long *delivered; /* XID event ids already handed out by this process */
static size_t ndelivered;
static char last_warning[4608];

/* One stderr line per change of trouble, not one per call (the caller may poll). */
static void warn(const char *msg)
{
    if (strcmp(msg, last_warning) == 0)
        return;
    snprintf(last_warning, sizeof last_warning, "%s", msg);
    fprintf(stderr, "fakenvml: %s\n", msg);
}

static void free_scenario(struct scenario *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->ngpus; i++) {
        free(s->gpus[i].procs);
        free(s->gpus[i].xids);
    }
    free(s);
}

static void *grow(void *array, size_t count, size_t size)
{
    return realloc(array, (count + 1) * size);
}

/* Parses one `key value...` line into s; returns an error message or NULL. */
static const char *parse_line(struct scenario *s, char *line)
{
    char key[32], word[64];
    int off = 0;
    if (sscanf(line, "%31s %n", key, &off) != 1 || key[0] == '#')
        return NULL;
    char *rest = line + off;
    rest[strcspn(rest, "\n")] = '\0';
    if (strcmp(key, "fakenvml-scenario") == 0)
        return strcmp(rest, "1") == 0 ? NULL : "unknown scenario format version";
    if (strcmp(key, "driver_version") == 0) {
        snprintf(s->driver_version, sizeof s->driver_version, "%s", rest);
        return NULL;
    }
    if (strcmp(key, "cuda_version") == 0)
        return sscanf(rest, "%d", &s->cuda_version) == 1 ? NULL : "bad cuda_version";
    if (strcmp(key, "init_error") == 0)
        return sscanf(rest, "%d", &s->init_error) == 1 ? NULL : "bad init_error";
    if (strcmp(key, "gpu") == 0) {
        if (s->ngpus == MAX_GPUS)
            return "too many GPUs";
        s->ngpus++;
        return NULL;
    }
    if (s->ngpus == 0)
        return "GPU field before the first `gpu` line";
    struct gpu *g = &s->gpus[s->ngpus - 1];
    int ok = 1;
    if (strcmp(key, "uuid") == 0)
        snprintf(g->uuid, sizeof g->uuid, "%s", rest);
    else if (strcmp(key, "name") == 0)
        snprintf(g->name, sizeof g->name, "%s", rest);
    else if (strcmp(key, "utilization") == 0)
        ok = sscanf(rest, "%u %u", &g->util_gpu, &g->util_memory) == 2;
    else if (strcmp(key, "memory") == 0)
        ok = sscanf(rest, "%llu %llu", &g->memory_total, &g->memory_used) == 2;
    else if (strcmp(key, "temperature") == 0)
        ok = sscanf(rest, "%u", &g->temperature) == 1;
    else if (strcmp(key, "power") == 0)
        ok = sscanf(rest, "%u %u", &g->power_mw, &g->power_limit_mw) == 2;
    else if (strcmp(key, "clocks") == 0)
        ok = sscanf(rest, "%u %u", &g->clock_sm, &g->clock_mem) == 2;
    else if (strcmp(key, "clocks_event_reasons") == 0)
        ok = sscanf(rest, "%llu", &g->clocks_event_reasons) == 1;
    else if (strcmp(key, "ecc") == 0)
        ok = sscanf(rest, "%llu %llu", &g->ecc_corrected, &g->ecc_uncorrected) == 2;
    else if (strcmp(key, "lost") == 0)
        ok = sscanf(rest, "%u", &g->lost) == 1;
    else if (strcmp(key, "not_supported") == 0) {
        for (int n = 0; sscanf(rest, "%63s %n", word, &n) == 1; rest += n) {
            size_t i = 0;
            while (i < sizeof feature_names / sizeof *feature_names &&
                   strcmp(word, feature_names[i].name) != 0)
                i++;
            if (i == sizeof feature_names / sizeof *feature_names)
                return "unknown not_supported field";
            g->unsupported |= feature_names[i].bit;
        }
    } else if (strcmp(key, "process") == 0) {
        struct process p = {0};
        char memory[32], kind[16];
        if (sscanf(rest, "%u %31s %u %u %15s", &p.pid, memory, &p.sm_util, &p.mem_util, kind) != 5)
            return "bad process line";
        p.used_memory = strcmp(memory, "na") == 0 ? NVML_VALUE_NOT_AVAILABLE_ULL
                                                  : strtoull(memory, NULL, 10);
        p.graphics = strcmp(kind, "graphics") == 0;
        struct process *procs = grow(g->procs, g->nprocs, sizeof *procs);
        if (!procs)
            return "out of memory";
        g->procs = procs;
        g->procs[g->nprocs++] = p;
    } else if (strcmp(key, "xid") == 0) {
        struct xid x;
        if (sscanf(rest, "%llu %llu", &x.id, &x.xid) != 2)
            return "bad xid line";
        struct xid *xids = grow(g->xids, g->nxids, sizeof *xids);
        if (!xids)
            return "out of memory";
        g->xids = xids;
        g->xids[g->nxids++] = x;
    } else
        return "unknown key";
    return ok ? NULL : "bad value";
}

static struct scenario *parse_file(FILE *f, char *err, size_t errlen)
{
    struct scenario *s = calloc(1, sizeof *s);
    char *line = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    while (s && getline(&line, &cap, f) != -1) {
        lineno++;
        const char *problem = parse_line(s, line);
        if (problem) {
            snprintf(err, errlen, "%s line %u: %s", scenario_path, lineno, problem);
            free_scenario(s);
            s = NULL;
        }
    }
    free(line);
    return s;
}

/* Re-reads the scenario when the file changed. Caller holds the lock. */
static void refresh(void)
{
    struct stat st;
    char msg[4608];
    if (stat(scenario_path, &st) != 0) {
        snprintf(msg, sizeof msg, "cannot read scenario %s", scenario_path);
        warn(msg);
        return;
    }
    if (current && st.st_ino == loaded_stat.st_ino && st.st_size == loaded_stat.st_size &&
        st.st_mtim.tv_sec == loaded_stat.st_mtim.tv_sec &&
        st.st_mtim.tv_nsec == loaded_stat.st_mtim.tv_nsec)
        return;
    FILE *f = fopen(scenario_path, "r");
    if (!f) {
        snprintf(msg, sizeof msg, "cannot open scenario %s", scenario_path);
        warn(msg);
        return;
    }
    struct scenario *s = parse_file(f, msg, sizeof msg);
    fclose(f);
    if (!s) {
        warn(msg);
        return;
    }
    free_scenario(current);
    current = s;
    loaded_stat = st;
    last_warning[0] = '\0';
}

static nvmlReturn_t unlock_with(nvmlReturn_t rc)
{
    pthread_mutex_unlock(&lock);
    return rc;
}

/* Takes the lock and refreshes; fails (lock released) when NVML is not initialized. */
static nvmlReturn_t begin(void)
{
    pthread_mutex_lock(&lock);
    if (init_count == 0 || !current)
        return unlock_with(NVML_ERROR_UNINITIALIZED);
    refresh();
    return NVML_SUCCESS;
}

/* begin() plus the checks every per-device getter shares; on success *g is the GPU and the
 * lock is held, so the getter must finish with unlock_with(). */
static nvmlReturn_t begin_device(nvmlDevice_t dev, unsigned feature, struct gpu **g)
{
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    if (dev < handles || dev >= handles + MAX_GPUS)
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    if (dev->index >= current->ngpus) /* its GPU left the scenario: as good as fallen off the bus */
        return unlock_with(NVML_ERROR_GPU_IS_LOST);
    *g = &current->gpus[dev->index];
    if ((*g)->lost)
        return unlock_with(NVML_ERROR_GPU_IS_LOST);
    if ((*g)->unsupported & feature)
        return unlock_with(NVML_ERROR_NOT_SUPPORTED);
    return NVML_SUCCESS;
}

#define DEVICE_CALL(dev, feature, out)                      \
    struct gpu *g;                                          \
    nvmlReturn_t rc_ = begin_device(dev, feature, &g);      \
    if (rc_ != NVML_SUCCESS)                                \
        return rc_;                                         \
    if (!(out))                                             \
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT)

static nvmlReturn_t copy_string(char *buf, unsigned length, const char *value)
{
    if (strlen(value) + 1 > length)
        return unlock_with(NVML_ERROR_INSUFFICIENT_SIZE);
    strcpy(buf, value);
    return unlock_with(NVML_SUCCESS);
}

/* A getter that copies one scenario value into *out. */
#define SCALAR_GETTER(function, feature, type, value)              \
    API nvmlReturn_t function(nvmlDevice_t device, type *out)      \
    {                                                              \
        DEVICE_CALL(device, feature, out);                         \
        *out = (value);                                            \
        return unlock_with(NVML_SUCCESS);                          \
    }

/* ---- init, shutdown, errors ------------------------------------------------------------ */

API nvmlReturn_t nvmlInitWithFlags(unsigned flags)
{
    (void)flags;
    pthread_mutex_lock(&lock);
    const char *path = getenv("FAKENVML_SCENARIO");
    if (!path || !*path) {
        warn("FAKENVML_SCENARIO is not set: no scenario, so no driver");
        return unlock_with(NVML_ERROR_DRIVER_NOT_LOADED);
    }
    if (strcmp(path, scenario_path) != 0) { /* another file: never answer from the old one */
        free_scenario(current);
        current = NULL;
        snprintf(scenario_path, sizeof scenario_path, "%s", path);
    }
    refresh();
    if (!current)
        return unlock_with(NVML_ERROR_DRIVER_NOT_LOADED);
    if (current->init_error != NVML_SUCCESS)
        return unlock_with(current->init_error);
    for (unsigned i = 0; i < MAX_GPUS; i++)
        handles[i].index = i;
    init_count++;
    return unlock_with(NVML_SUCCESS);
}

API nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
API nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }

API nvmlReturn_t nvmlShutdown(void)
{
    pthread_mutex_lock(&lock);
    if (init_count == 0)
        return unlock_with(NVML_ERROR_UNINITIALIZED);
    init_count--;
    return unlock_with(NVML_SUCCESS);
}

API const char *nvmlErrorString(nvmlReturn_t result)
{
    static const char *const strings[] = {
        "Success", "Uninitialized", "Invalid Argument", "Not Supported",
        "Insufficient Permissions", "Already Initialized", "Not Found", "Insufficient Size",
        "Insufficient External Power", "Driver Not Loaded", "Timeout", "Interrupt request issue",
        "NVML Shared Library Not Found", "Function Not Found", "Corrupted infoROM",
        "GPU is lost", "GPU requires restart", "The operating system has blocked the request.",
        "RM has detected an NVML/RM version mismatch.", "In use by another client",
        "Insufficient Memory", "No data",
        "The requested vgpu operation is not available on target device, because ECC is enabled",
        "Insufficient resources for request", "Frequency not supported",
        "Argument version mismatch", "Deprecated", "Not ready", "GPU not found",
        "Invalid state", "Reset type not supported",
    };
    if (result >= 0 && (size_t)result < sizeof strings / sizeof *strings)
        return strings[result];
    return "Unknown Error";
}

/* ---- system ---------------------------------------------------------------------------- */

API nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned length)
{
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    if (!version)
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    return copy_string(version, length, current->driver_version);
}

API nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned length)
{
    char value[128];
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    if (!version)
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    /* Real NVML reports "<CUDA major>.<driver version>", e.g. 12.550.54.15. */
    snprintf(value, sizeof value, "%d.%s", current->cuda_version / 1000, current->driver_version);
    return copy_string(version, length, value);
}

API nvmlReturn_t nvmlSystemGetCudaDriverVersion(int *version)
{
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    if (!version)
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    *version = current->cuda_version;
    return unlock_with(NVML_SUCCESS);
}

API nvmlReturn_t nvmlSystemGetCudaDriverVersion_v2(int *version)
{
    return nvmlSystemGetCudaDriverVersion(version);
}

/* ---- device enumeration (works for lost GPUs, so a caller can tell which one is lost) --- */

API nvmlReturn_t nvmlDeviceGetCount_v2(unsigned *count)
{
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    if (!count)
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    *count = current->ngpus;
    return unlock_with(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetCount(unsigned *count) { return nvmlDeviceGetCount_v2(count); }

API nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_t *device)
{
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    if (!device || index >= current->ngpus)
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    *device = &handles[index];
    return unlock_with(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned index, nvmlDevice_t *device)
{
    return nvmlDeviceGetHandleByIndex_v2(index, device);
}

API nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device)
{
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    if (!uuid || !device)
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    for (unsigned i = 0; i < current->ngpus; i++) {
        if (strcmp(current->gpus[i].uuid, uuid) == 0) {
            *device = &handles[i];
            return unlock_with(NVML_SUCCESS);
        }
    }
    return unlock_with(NVML_ERROR_NOT_FOUND);
}

API nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t device, unsigned *index)
{
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    if (!index || device < handles || device >= handles + current->ngpus)
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    *index = device->index;
    return unlock_with(NVML_SUCCESS);
}

/* ---- per-device getters ------------------------------------------------------------------ */

API nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned length)
{
    DEVICE_CALL(device, 0, uuid);
    return copy_string(uuid, length, g->uuid);
}

API nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned length)
{
    DEVICE_CALL(device, 0, name);
    return copy_string(name, length, g->name);
}

SCALAR_GETTER(nvmlDeviceGetMinorNumber, 0, unsigned, device->index)

API nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
    DEVICE_CALL(device, F_PCI, pci);
    memset(pci, 0, sizeof *pci);
    pci->bus = device->index + 1;
    pci->pciDeviceId = 0x20B210DE; /* an A100's device id, NVIDIA's vendor id */
    snprintf(pci->busId, sizeof pci->busId, "00000000:%02X:00.0", pci->bus);
    snprintf(pci->busIdLegacy, sizeof pci->busIdLegacy, "0000:%02X:00.0", pci->bus);
    return unlock_with(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *u)
{
    DEVICE_CALL(device, F_UTILIZATION, u);
    u->gpu = g->util_gpu;
    u->memory = g->util_memory;
    return unlock_with(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *m)
{
    DEVICE_CALL(device, F_MEMORY, m);
    m->total = g->memory_total;
    m->used = g->memory_used;
    m->free = g->memory_total - g->memory_used;
    return unlock_with(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t device, nvmlMemory_v2_t *m)
{
    DEVICE_CALL(device, F_MEMORY, m);
    if (m->version != NVML_MEMORY_V2)
        return unlock_with(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
    m->total = g->memory_total;
    m->reserved = 0;
    m->used = g->memory_used;
    m->free = g->memory_total - g->memory_used;
    return unlock_with(NVML_SUCCESS);
}

API nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned *temp)
{
    DEVICE_CALL(device, F_TEMPERATURE, temp);
    if (sensor != 0) /* NVML_TEMPERATURE_GPU is the only sensor */
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    *temp = g->temperature;
    return unlock_with(NVML_SUCCESS);
}

SCALAR_GETTER(nvmlDeviceGetPowerUsage, F_POWER, unsigned, g->power_mw)
SCALAR_GETTER(nvmlDeviceGetEnforcedPowerLimit, F_POWER_LIMIT, unsigned, g->power_limit_mw)
SCALAR_GETTER(nvmlDeviceGetPowerManagementLimit, F_POWER_LIMIT, unsigned, g->power_limit_mw)

API nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, int type, unsigned *clock)
{
    DEVICE_CALL(device, F_CLOCKS, clock);
    switch (type) {
    case 0: /* NVML_CLOCK_GRAPHICS: the graphics and SM domains run at one clock */
    case 1: /* NVML_CLOCK_SM */
        *clock = g->clock_sm;
        return unlock_with(NVML_SUCCESS);
    case 2: /* NVML_CLOCK_MEM */
        *clock = g->clock_mem;
        return unlock_with(NVML_SUCCESS);
    case 3: /* NVML_CLOCK_VIDEO: not modelled */
        return unlock_with(NVML_ERROR_NOT_SUPPORTED);
    default:
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    }
}

SCALAR_GETTER(nvmlDeviceGetCurrentClocksEventReasons, F_CLOCKS_EVENT_REASONS, unsigned long long,
              g->clocks_event_reasons)
SCALAR_GETTER(nvmlDeviceGetCurrentClocksThrottleReasons, F_CLOCKS_EVENT_REASONS,
              unsigned long long, g->clocks_event_reasons)
SCALAR_GETTER(nvmlDeviceGetSupportedClocksEventReasons, F_CLOCKS_EVENT_REASONS,
              unsigned long long, CLOCKS_EVENT_REASONS_ALL)
SCALAR_GETTER(nvmlDeviceGetSupportedClocksThrottleReasons, F_CLOCKS_EVENT_REASONS,
              unsigned long long, CLOCKS_EVENT_REASONS_ALL)

/* errorType 0 corrected / 1 uncorrected; counterType 0 volatile / 1 aggregate. The
 * aggregate (lifetime) count equals the volatile one: a board fresh from the factory. */
API nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, int errorType, int counterType,
                                             unsigned long long *count)
{
    DEVICE_CALL(device, F_ECC, count);
    if (errorType < 0 || errorType > 1 || counterType < 0 || counterType > 1)
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    *count = errorType == 0 ? g->ecc_corrected : g->ecc_uncorrected;
    return unlock_with(NVML_SUCCESS);
}

/* ---- processes --------------------------------------------------------------------------- */

/* The two-call protocol: NULL (or too small) buffer -> INSUFFICIENT_SIZE and the count. */
static nvmlReturn_t running_processes(nvmlDevice_t device, unsigned *count, void *infos,
                                      unsigned graphics, int version)
{
    DEVICE_CALL(device, F_PROCESSES, count);
    unsigned n = 0;
    for (size_t i = 0; i < g->nprocs; i++)
        n += g->procs[i].graphics == graphics;
    unsigned room = *count;
    *count = n;
    if (n == 0)
        return unlock_with(NVML_SUCCESS);
    if (!infos || room < n)
        return unlock_with(NVML_ERROR_INSUFFICIENT_SIZE);
    unsigned k = 0;
    for (size_t i = 0; i < g->nprocs; i++) {
        const struct process *p = &g->procs[i];
        if (p->graphics != graphics)
            continue;
        if (version == 1) {
            nvmlProcessInfo_v1_t *out = (nvmlProcessInfo_v1_t *)infos + k++;
            out->pid = p->pid;
            out->usedGpuMemory = p->used_memory;
        } else {
            nvmlProcessInfo_v2_t *out = (nvmlProcessInfo_v2_t *)infos + k++;
            out->pid = p->pid;
            out->usedGpuMemory = p->used_memory;
            out->gpuInstanceId = out->computeInstanceId = NVML_INSTANCE_ID_NONE;
        }
    }
    return unlock_with(NVML_SUCCESS);
}

#define RUNNING_PROCESSES(function, graphics, version)                                   \
    API nvmlReturn_t function(nvmlDevice_t device, unsigned *count, void *infos)           \
    {                                                                                      \
        return running_processes(device, count, infos, graphics, version);                 \
    }
RUNNING_PROCESSES(nvmlDeviceGetComputeRunningProcesses_v3, 0, 3)
RUNNING_PROCESSES(nvmlDeviceGetComputeRunningProcesses_v2, 0, 2)
RUNNING_PROCESSES(nvmlDeviceGetComputeRunningProcesses, 0, 1) /* the unversioned name is v1 */
RUNNING_PROCESSES(nvmlDeviceGetGraphicsRunningProcesses_v3, 1, 3)
RUNNING_PROCESSES(nvmlDeviceGetGraphicsRunningProcesses_v2, 1, 2)
RUNNING_PROCESSES(nvmlDeviceGetGraphicsRunningProcesses, 1, 1)

static unsigned long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000;
}

/* Each call samples "now". As on real drivers, a process that is neither computing nor
 * touching memory (sm_util and mem_util 0) has no sample, and no samples is NOT_FOUND. */
API nvmlReturn_t nvmlDeviceGetProcessUtilization(nvmlDevice_t device,
                                                 nvmlProcessUtilizationSample_t *samples,
                                                 unsigned *count,
                                                 unsigned long long lastSeenTimeStamp)
{
    DEVICE_CALL(device, F_PROCESS_UTILIZATION, count);
    unsigned long long now = now_us();
    unsigned n = 0;
    for (size_t i = 0; i < g->nprocs && now > lastSeenTimeStamp; i++)
        n += g->procs[i].sm_util > 0 || g->procs[i].mem_util > 0;
    unsigned room = *count;
    *count = n;
    if (n == 0)
        return unlock_with(NVML_ERROR_NOT_FOUND);
    if (!samples || room < n)
        return unlock_with(NVML_ERROR_INSUFFICIENT_SIZE);
    unsigned k = 0;
    for (size_t i = 0; i < g->nprocs; i++) {
        const struct process *p = &g->procs[i];
        if (p->sm_util == 0 && p->mem_util == 0)
            continue;
        samples[k++] = (nvmlProcessUtilizationSample_t){
            .pid = p->pid, .timeStamp = now, .smUtil = p->sm_util, .memUtil = p->mem_util};
    }
    return unlock_with(NVML_SUCCESS);
}

/* ---- events: XIDs from the scenario, each handed out once per process --------------------- */

static unsigned long long supported_events(const struct gpu *g)
{
    unsigned long long ecc = EVENT_SINGLE_BIT_ECC | EVENT_DOUBLE_BIT_ECC;
    return EVENT_XID | EVENT_PSTATE | EVENT_CLOCK | ((g->unsupported & F_ECC) ? 0 : ecc);
}

SCALAR_GETTER(nvmlDeviceGetSupportedEventTypes, F_EVENTS, unsigned long long, supported_events(g))

API nvmlReturn_t nvmlEventSetCreate(nvmlEventSet_t *set)
{
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    if (!set)
        return unlock_with(NVML_ERROR_INVALID_ARGUMENT);
    *set = calloc(1, sizeof **set);
    return unlock_with(*set ? NVML_SUCCESS : NVML_ERROR_UNKNOWN);
}

API nvmlReturn_t nvmlDeviceRegisterEvents(nvmlDevice_t device, unsigned long long types,
                                          nvmlEventSet_t set)
{
    DEVICE_CALL(device, F_EVENTS, set);
    if (types & ~supported_events(g))
        return unlock_with(NVML_ERROR_NOT_SUPPORTED);
    set->types[device->index] |= types;
    return unlock_with(NVML_SUCCESS);
}

static int was_delivered(unsigned long long id)
{
    for (size_t i = 0; i < ndelivered; i++)
        if (delivered[i] == id)
            return 1;
    return 0;
}

/* One attempt under the lock: an undelivered XID of a registered GPU, else TIMEOUT (keep
 * waiting), or GPU_IS_LOST once a registered GPU is lost and its XIDs have all gone out. */
static nvmlReturn_t next_event(nvmlEventSet_t set, nvmlEventData_t *data)
{
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    rc = NVML_ERROR_TIMEOUT;
    for (unsigned i = 0; i < current->ngpus; i++) {
        const struct gpu *g = &current->gpus[i];
        if (!(set->types[i] & EVENT_XID))
            continue;
        for (size_t k = 0; k < g->nxids; k++) {
            if (was_delivered(g->xids[k].id))
                continue;
            unsigned long long *grown = grow(delivered, ndelivered, sizeof *delivered);
            if (!grown)
                return unlock_with(NVML_ERROR_UNKNOWN);
            delivered = grown;
            delivered[ndelivered++] = g->xids[k].id;
            *data = (nvmlEventData_t){.device = &handles[i], .eventType = EVENT_XID,
                                      .eventData = g->xids[k].xid,
                                      .gpuInstanceId = NVML_INSTANCE_ID_NONE,
                                      .computeInstanceId = NVML_INSTANCE_ID_NONE};
            return unlock_with(NVML_SUCCESS);
        }
        if (g->lost)
            rc = NVML_ERROR_GPU_IS_LOST;
    }
    return unlock_with(rc);
}

API nvmlReturn_t nvmlEventSetWait_v2(nvmlEventSet_t set, nvmlEventData_t *data, unsigned timeoutms)
{
    if (!set || !data)
        return NVML_ERROR_INVALID_ARGUMENT;
    /* Sleep in steps: no busy spin, delivery within 50 ms. A real driver blocks without
     * using the CPU; short steps would charge the exporter CPU that is only the stand-in's. */
    const unsigned step_ms = 50;
    for (unsigned waited = 0;; waited += step_ms) {
        nvmlReturn_t rc = next_event(set, data);
        if (rc != NVML_ERROR_TIMEOUT || waited >= timeoutms)
            return rc;
        unsigned ms = timeoutms - waited < step_ms ? timeoutms - waited : step_ms;
        nanosleep(&(struct timespec){.tv_nsec = (long)ms * 1000000L}, NULL);
    }
}

API nvmlReturn_t nvmlEventSetWait(nvmlEventSet_t set, nvmlEventData_t *data, unsigned timeoutms)
{
    return nvmlEventSetWait_v2(set, data, timeoutms);
}

API nvmlReturn_t nvmlEventSetFree(nvmlEventSet_t set)
{
    nvmlReturn_t rc = begin();
    if (rc != NVML_SUCCESS)
        return rc;
    free(set);
    return unlock_with(NVML_SUCCESS);
}
