"""The stand-in libnvidia-ml.so.1 through the real pynvml, function by function."""

from __future__ import annotations

from fakenvml import Gpu, Process, Scenario, XidEvent, build_library

GIB = 1024**3

TWO_GPUS = Scenario(
    driver_version="535.161.07",
    cuda_version=12020,
    gpus=[
        Gpu(
            uuid="GPU-aaaa",
            name="NVIDIA H100 80GB HBM3",
            utilization_gpu=87,
            utilization_memory=42,
            memory_total=80 * GIB,
            memory_used=30 * GIB + 5,
            temperature=71,
            power_mw=512_345,
            power_limit_mw=700_000,
            clock_sm_mhz=1980,
            clock_mem_mhz=2619,
            clocks_event_reasons=0x4 | 0x40,
            ecc_corrected=12,
            ecc_uncorrected=3,
        ),
        Gpu(name="Tesla T4", memory_total=16 * GIB, temperature=44),
    ],
)


def test_values_round_trip(run_pynvml):
    out = run_pynvml(
        TWO_GPUS,
        """
        n.nvmlInit()
        out["driver"] = n.nvmlSystemGetDriverVersion()
        out["nvml"] = n.nvmlSystemGetNVMLVersion()
        out["cuda"] = [n.nvmlSystemGetCudaDriverVersion(), n.nvmlSystemGetCudaDriverVersion_v2()]
        out["count"] = n.nvmlDeviceGetCount()
        gpus = out["gpus"] = []
        for i in range(n.nvmlDeviceGetCount()):
            h = n.nvmlDeviceGetHandleByIndex(i)
            same = n.nvmlDeviceGetHandleByUUID(n.nvmlDeviceGetUUID(h))
            m1, m2 = n.nvmlDeviceGetMemoryInfo(h), n.nvmlDeviceGetMemoryInfo(h, n.nvmlMemory_v2)
            u = n.nvmlDeviceGetUtilizationRates(h)
            gpus.append({
                "index": n.nvmlDeviceGetIndex(h),
                "minor": n.nvmlDeviceGetMinorNumber(h),
                "uuid": n.nvmlDeviceGetUUID(h),
                "by_uuid": n.nvmlDeviceGetIndex(same),
                "name": n.nvmlDeviceGetName(h),
                "util": [u.gpu, u.memory],
                "mem_v1": [m1.total, m1.used, m1.free],
                "mem_v2": [m2.total, m2.used, m2.free, m2.reserved],
                "temp": n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU),
                "power": n.nvmlDeviceGetPowerUsage(h),
                "limits": [n.nvmlDeviceGetEnforcedPowerLimit(h),
                           n.nvmlDeviceGetPowerManagementLimit(h)],
                "clocks": [n.nvmlDeviceGetClockInfo(h, t) for t in
                           (n.NVML_CLOCK_SM, n.NVML_CLOCK_GRAPHICS, n.NVML_CLOCK_MEM)],
                "video_clock": call(n.nvmlDeviceGetClockInfo, h, n.NVML_CLOCK_VIDEO),
                "reasons": [n.nvmlDeviceGetCurrentClocksEventReasons(h),
                            n.nvmlDeviceGetCurrentClocksThrottleReasons(h)],
                "supported_reasons": n.nvmlDeviceGetSupportedClocksEventReasons(h),
                "ecc": [n.nvmlDeviceGetTotalEccErrors(h, e, c)
                        for e in (n.NVML_MEMORY_ERROR_TYPE_CORRECTED,
                                  n.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)
                        for c in (n.NVML_VOLATILE_ECC, n.NVML_AGGREGATE_ECC)],
                "bus_id": n.nvmlDeviceGetPciInfo(h).busId,
            })
        out["bad_index"] = call(n.nvmlDeviceGetHandleByIndex, 2)
        out["bad_uuid"] = call(n.nvmlDeviceGetHandleByUUID, "GPU-nope")
        out["bad_sensor"] = call(n.nvmlDeviceGetTemperature, h, 1)
        n.nvmlShutdown()
        """,
    )
    assert out["driver"] == "535.161.07"
    assert out["nvml"] == "12.535.161.07"
    assert out["cuda"] == [12020, 12020]
    assert out["count"] == 2
    first, second = out["gpus"]
    assert first == {
        "index": 0,
        "minor": 0,
        "uuid": "GPU-aaaa",
        "by_uuid": 0,
        "name": "NVIDIA H100 80GB HBM3",
        "util": [87, 42],
        "mem_v1": [80 * GIB, 30 * GIB + 5, 50 * GIB - 5],
        "mem_v2": [80 * GIB, 30 * GIB + 5, 50 * GIB - 5, 0],
        "temp": 71,
        "power": 512_345,
        "limits": [700_000, 700_000],
        "clocks": [1980, 1980, 2619],
        "video_clock": "NVMLError_NotSupported",
        "reasons": [0x44, 0x44],
        "supported_reasons": 0x1FF,
        "ecc": [12, 12, 3, 3],
        "bus_id": "00000000:01:00.0",
    }
    assert second["index"] == 1
    assert second["uuid"] == "GPU-fa4e0000-0000-4000-8000-000000000001"
    assert second["name"] == "Tesla T4"
    assert second["mem_v1"] == [16 * GIB, 0, 16 * GIB]
    assert second["temp"] == 44
    assert out["bad_index"] == "NVMLError_InvalidArgument"
    assert out["bad_uuid"] == "NVMLError_NotFound"
    assert out["bad_sensor"] == "NVMLError_InvalidArgument"


# Each not_supported name, and the getters it must turn into NVML_ERROR_NOT_SUPPORTED.
NOT_SUPPORTED_GETTERS = {
    "utilization": "n.nvmlDeviceGetUtilizationRates(h)",
    "memory": "n.nvmlDeviceGetMemoryInfo(h)",
    "temperature": "n.nvmlDeviceGetTemperature(h, 0)",
    "power": "n.nvmlDeviceGetPowerUsage(h)",
    "power_limit": "n.nvmlDeviceGetEnforcedPowerLimit(h)",
    "clocks": "n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM)",
    "clocks_event_reasons": "n.nvmlDeviceGetCurrentClocksEventReasons(h)",
    "ecc": "n.nvmlDeviceGetTotalEccErrors(h, 0, 0)",
    "processes": "n.nvmlDeviceGetComputeRunningProcesses(h)",
    "process_utilization": "n.nvmlDeviceGetProcessUtilization(h, 0)",
    "events": "n.nvmlDeviceGetSupportedEventTypes(h)",
    "pci": "n.nvmlDeviceGetPciInfo(h)",
}


def test_each_field_can_be_not_supported_alone(run_pynvml):
    fields = sorted(NOT_SUPPORTED_GETTERS)
    # GPU i lacks only fields[i]; every GPU is asked every getter.
    busy = [Process(pid=7, sm_util=10)]
    scenario = Scenario(gpus=[Gpu(not_supported={f}, processes=busy) for f in fields])
    getters = "{" + ", ".join(f"{f!r}: lambda h: {g}" for f, g in NOT_SUPPORTED_GETTERS.items())
    out = run_pynvml(
        scenario,
        f"""
        n.nvmlInit()
        getters = {getters}}}
        for i, missing in enumerate({fields!r}):
            h = n.nvmlDeviceGetHandleByIndex(i)
            results = {{f: call(g, h) for f, g in getters.items()}}
            out[missing] = {{f: r if isinstance(r, str) else "ok" for f, r in results.items()}}
        """,
    )
    for missing, results in out.items():
        for field, result in results.items():
            if field == missing:
                assert result == "NVMLError_NotSupported", (missing, field)
            else:
                assert not result.startswith("NVMLError"), (missing, field, result)


def test_lost_gpu_keeps_count_and_handles(run_pynvml):
    scenario = Scenario(gpus=[Gpu(), Gpu(lost=True)])
    out = run_pynvml(
        scenario,
        """
        n.nvmlInit()
        out["count"] = n.nvmlDeviceGetCount()
        h0, h1 = n.nvmlDeviceGetHandleByIndex(0), n.nvmlDeviceGetHandleByIndex(1)
        out["index"] = n.nvmlDeviceGetIndex(h1)
        out["lost"] = [call(f, h1) for f in (n.nvmlDeviceGetUUID, n.nvmlDeviceGetName,
                       n.nvmlDeviceGetMemoryInfo, n.nvmlDeviceGetUtilizationRates,
                       n.nvmlDeviceGetPowerUsage, n.nvmlDeviceGetComputeRunningProcesses,
                       n.nvmlDeviceGetSupportedEventTypes)]
        out["healthy"] = n.nvmlDeviceGetUUID(h0)
        """,
    )
    assert out["count"] == 2
    assert out["index"] == 1
    assert out["lost"] == ["NVMLError_GpuIsLost"] * 7
    assert out["healthy"] == "GPU-fa4e0000-0000-4000-8000-000000000000"


def test_init_error_then_recovery(run_pynvml):
    out = run_pynvml(
        Scenario(gpus=[Gpu()], init_error="DRIVER_NOT_LOADED"),
        """
        out["broken"] = call(n.nvmlInit)
        Scenario(gpus=[Gpu()], init_error="LIB_RM_VERSION_MISMATCH").write(SCENARIO)
        out["mismatch"] = call(n.nvmlInit)
        out["message"] = str(n.NVMLError(n.NVML_ERROR_LIB_RM_VERSION_MISMATCH))
        Scenario(gpus=[Gpu(), Gpu()]).write(SCENARIO)
        n.nvmlInit()
        out["count"] = n.nvmlDeviceGetCount()
        """,
    )
    assert out["broken"] == "NVMLError_DriverNotLoaded"
    assert out["mismatch"] == "NVMLError_LibRmVersionMismatch"
    assert out["message"] == "RM has detected an NVML/RM version mismatch."
    assert out["count"] == 2


def test_calls_after_shutdown_are_uninitialized(run_pynvml):
    out = run_pynvml(
        Scenario(gpus=[Gpu()]),
        """
        n.nvmlInit(); n.nvmlInit()
        h = n.nvmlDeviceGetHandleByIndex(0)
        n.nvmlShutdown()
        out["still_one_ref"] = n.nvmlDeviceGetCount()
        n.nvmlShutdown()
        out["after"] = [call(n.nvmlDeviceGetCount), call(n.nvmlDeviceGetUUID, h),
                        call(n.nvmlSystemGetDriverVersion), call(n.nvmlShutdown)]
        """,
    )
    assert out["still_one_ref"] == 1
    assert out["after"] == ["NVMLError_Uninitialized"] * 4


def test_no_scenario_means_no_driver(run_pynvml):
    out = run_pynvml(None, 'out["init"] = call(n.nvmlInit)', FAKENVML_SCENARIO="")
    assert out["init"] == "NVMLError_DriverNotLoaded"
    assert run_pynvml.stderr.strip() == (
        "fakenvml: FAKENVML_SCENARIO is not set: no scenario, so no driver"
    )


def test_scenario_changes_are_seen_live(run_pynvml):
    out = run_pynvml(
        Scenario(gpus=[Gpu(utilization_gpu=10)]),
        """
        n.nvmlInit()
        h = n.nvmlDeviceGetHandleByIndex(0)
        out["before"] = n.nvmlDeviceGetUtilizationRates(h).gpu
        Scenario(gpus=[Gpu(utilization_gpu=90), Gpu()]).write(SCENARIO)
        out["after"] = [n.nvmlDeviceGetUtilizationRates(h).gpu, n.nvmlDeviceGetCount()]
        Scenario(gpus=[]).write(SCENARIO)
        out["gone"] = [n.nvmlDeviceGetCount(), call(n.nvmlDeviceGetUUID, h)]
        with open(SCENARIO, "w") as f:  # a broken file keeps the last good scenario
            f.write("gpu\\nbogus 1\\n")
        out["broken"] = n.nvmlDeviceGetCount()
        """,
    )
    assert out["before"] == 10
    assert out["after"] == [90, 2]
    assert out["gone"] == [0, "NVMLError_GpuIsLost"]
    assert out["broken"] == 0
    assert "line 2: unknown key" in run_pynvml.stderr


PROCESSES = [
    Process(pid=100, used_memory=3 * GIB, sm_util=40, mem_util=10),
    Process(pid=101, used_memory=None),
    Process(pid=200, used_memory=GIB, kind="graphics", sm_util=5),
]


def test_running_processes_every_version(run_pynvml):
    out = run_pynvml(
        Scenario(gpus=[Gpu(processes=PROCESSES), Gpu()]),
        """
        import ctypes
        n.nvmlInit()
        h, idle = n.nvmlDeviceGetHandleByIndex(0), n.nvmlDeviceGetHandleByIndex(1)
        rows = lambda procs: [[p.pid, p.usedGpuMemory, p.gpuInstanceId] for p in procs]
        for name in ("nvmlDeviceGetComputeRunningProcesses_v3",
                     "nvmlDeviceGetComputeRunningProcesses_v2",
                     "nvmlDeviceGetGraphicsRunningProcesses_v3",
                     "nvmlDeviceGetGraphicsRunningProcesses_v2"):
            out[name] = rows(getattr(n, name)(h))
            out[name + " idle"] = getattr(n, name)(idle)
        # The unversioned C symbols use nvml.h's v1 struct, which pynvml no longer wraps.
        class V1(ctypes.Structure):
            _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong)]
        for kind in ("Compute", "Graphics"):
            fn = getattr(n.nvmlLib, f"nvmlDevice{kind}RunningProcesses".replace(
                "Device", "DeviceGet"))
            count = ctypes.c_uint(0)
            out[kind + " v1 size"] = [fn(h, ctypes.byref(count), None), count.value]
            infos = (V1 * count.value)()
            out[kind + " v1 rc"] = fn(h, ctypes.byref(count), infos)
            out[kind + " v1"] = [[p.pid, p.usedGpuMemory] for p in infos]
        """,
    )
    none = 0xFFFFFFFF
    compute = [[100, 3 * GIB, none], [101, None, none]]
    assert out["nvmlDeviceGetComputeRunningProcesses_v3"] == compute
    assert out["nvmlDeviceGetComputeRunningProcesses_v2"] == compute
    assert out["nvmlDeviceGetGraphicsRunningProcesses_v3"] == [[200, GIB, none]]
    assert out["nvmlDeviceGetGraphicsRunningProcesses_v2"] == [[200, GIB, none]]
    assert all(out[k] == [] for k in out if k.endswith(" idle"))
    assert out["Compute v1 size"] == [7, 2]  # NVML_ERROR_INSUFFICIENT_SIZE, 2 processes
    assert out["Compute v1 rc"] == 0
    assert out["Compute v1"] == [[100, 3 * GIB], [101, 2**64 - 1]]
    assert out["Graphics v1"] == [[200, GIB]]


def test_library_without_v3_raises_function_not_found(run_pynvml, lib_dir, tmp_path):
    omitting = build_library(tmp_path / "lib", omit=["nvmlDeviceGetComputeRunningProcesses_v3"])
    assert omitting != lib_dir
    out = run_pynvml(
        Scenario(gpus=[Gpu(processes=PROCESSES)]),
        """
        n.nvmlInit()
        h = n.nvmlDeviceGetHandleByIndex(0)
        out["v3"] = call(n.nvmlDeviceGetComputeRunningProcesses_v3, h)
        out["v2"] = [p.pid for p in n.nvmlDeviceGetComputeRunningProcesses_v2(h)]
        out["graphics_v3"] = [p.pid for p in n.nvmlDeviceGetGraphicsRunningProcesses_v3(h)]
        try:
            n.nvmlDeviceGetComputeRunningProcesses(h)
        except n.NVMLLibraryMismatchError:
            out["plain"] = "NVMLLibraryMismatchError"
        """,
        lib_dir=omitting,
    )
    assert out == {
        "v3": "NVMLError_FunctionNotFound",
        "v2": [100, 101],
        "graphics_v3": [200],
        "plain": "NVMLLibraryMismatchError",
    }


def test_process_utilization_samples_and_not_found(run_pynvml):
    idle = [Process(pid=300, used_memory=GIB)]  # holds memory, computes nothing
    out = run_pynvml(
        Scenario(gpus=[Gpu(processes=PROCESSES), Gpu(processes=idle), Gpu()]),
        """
        import time
        n.nvmlInit()
        h, idle, empty = (n.nvmlDeviceGetHandleByIndex(i) for i in range(3))
        before = int(time.time() * 1e6)
        samples = n.nvmlDeviceGetProcessUtilization(h, 0)
        after = int(time.time() * 1e6)
        out["samples"] = [[s.pid, s.smUtil, s.memUtil] for s in samples]
        out["in_window"] = all(before <= s.timeStamp <= after for s in samples)
        out["newer"] = len(n.nvmlDeviceGetProcessUtilization(h, samples[0].timeStamp))
        out["future"] = call(n.nvmlDeviceGetProcessUtilization, h, after + 10**9)
        out["idle"] = call(n.nvmlDeviceGetProcessUtilization, idle, 0)
        out["empty"] = call(n.nvmlDeviceGetProcessUtilization, empty, 0)
        """,
    )
    assert out["samples"] == [[100, 40, 10], [200, 5, 0]]
    assert out["in_window"] is True
    assert out["newer"] == 2
    assert out["future"] == "NVMLError_NotFound"
    assert out["idle"] == "NVMLError_NotFound"
    assert out["empty"] == "NVMLError_NotFound"


def test_xid_events_delivered_once(run_pynvml):
    scenario = Scenario(
        gpus=[
            Gpu(xid_events=[XidEvent(id=1, xid=79), XidEvent(id=2, xid=48)]),
            Gpu(xid_events=[XidEvent(id=3, xid=13)]),
            Gpu(xid_events=[XidEvent(id=4, xid=31)]),  # not registered: never delivered
        ]
    )
    out = run_pynvml(
        scenario,
        """
        import time
        n.nvmlInit()
        handles = [n.nvmlDeviceGetHandleByIndex(i) for i in range(3)]
        out["supported"] = n.nvmlDeviceGetSupportedEventTypes(handles[0])
        event_set = n.nvmlEventSetCreate()
        for h in handles[:2]:
            n.nvmlDeviceRegisterEvents(h, n.nvmlEventTypeXidCriticalError, event_set)
        def drain():
            got = []
            while True:
                try:
                    e = n.nvmlEventSetWait_v2(event_set, 200)
                except n.NVMLError_Timeout:
                    return got
                got.append([n.nvmlDeviceGetIndex(e.device), e.eventType, e.eventData])
        out["first"] = drain()
        start = time.monotonic()
        out["again"] = call(n.nvmlEventSetWait, event_set, 300)
        out["waited_s"] = time.monotonic() - start
        # A new event appears live; the old ids stay delivered.
        gpus = Scenario(gpus=[Gpu(xid_events=[XidEvent(1, 79), XidEvent(5, 94)]), Gpu(), Gpu()])
        gpus.write(SCENARIO)
        out["live"] = drain()
        n.nvmlEventSetFree(event_set)
        """,
    )
    xid = 8  # nvmlEventTypeXidCriticalError
    assert out["supported"] & xid
    assert out["first"] == [[0, xid, 79], [0, xid, 48], [1, xid, 13]]
    assert out["again"] == "NVMLError_Timeout"
    assert out["waited_s"] >= 0.3
    assert out["live"] == [[0, xid, 94]]


def test_events_on_lost_gpu_then_gpu_is_lost(run_pynvml):
    out = run_pynvml(
        Scenario(gpus=[Gpu()]),
        """
        n.nvmlInit()
        h = n.nvmlDeviceGetHandleByIndex(0)
        event_set = n.nvmlEventSetCreate()
        n.nvmlDeviceRegisterEvents(h, n.nvmlEventTypeXidCriticalError, event_set)
        Scenario(gpus=[Gpu(lost=True, xid_events=[XidEvent(7, 79)])]).write(SCENARIO)
        out["xid"] = n.nvmlEventSetWait_v2(event_set, 1000).eventData
        out["then"] = call(n.nvmlEventSetWait_v2, event_set, 1000)
        out["register"] = call(n.nvmlDeviceRegisterEvents, h, 8, event_set)
        """,
    )
    assert out == {"xid": 79, "then": "NVMLError_GpuIsLost", "register": "NVMLError_GpuIsLost"}


def test_concurrent_calls_while_scenario_changes(run_pynvml):
    out = run_pynvml(
        Scenario(gpus=[Gpu(processes=PROCESSES)] * 4),
        """
        import threading
        n.nvmlInit()
        errors = []
        def scrape():
            for _ in range(300):
                for i in range(n.nvmlDeviceGetCount()):
                    h = n.nvmlDeviceGetHandleByIndex(i)
                    try:
                        n.nvmlDeviceGetUUID(h)
                        n.nvmlDeviceGetComputeRunningProcesses(h)
                    except n.NVMLError_InsufficientSize:
                        pass  # the list grew between pynvml's two calls, as on real GPUs
                    except n.NVMLError as e:
                        errors.append(str(e))
        threads = [threading.Thread(target=scrape) for _ in range(4)]
        for t in threads:
            t.start()
        for k in range(30):
            procs = [Process(pid=1000 + p) for p in range(k % 7)]
            Scenario(gpus=[Gpu(processes=procs)] * 4).write(SCENARIO)
        for t in threads:
            t.join()
        out["errors"] = errors
        """,
    )
    assert out["errors"] == []


def test_preload_without_ld_library_path(run_pynvml, lib_dir):
    out = run_pynvml(
        Scenario(gpus=[Gpu(), Gpu(), Gpu()]),
        f"""
        import fakenvml
        fakenvml.preload({str(lib_dir)!r})
        n.nvmlInit()
        out["count"] = n.nvmlDeviceGetCount()
        """,
        lib_dir=lib_dir.parent / "nowhere",
    )
    assert out["count"] == 3


def test_error_strings(run_pynvml):
    out = run_pynvml(
        Scenario(),
        """
        n.nvmlInit()  # pynvml loads the library on its first nvmlInit
        out["s"] = [n.nvmlErrorString(code) for code in (0, 1, 9, 15, 18, 30, 999, 12345)]
        """,
    )
    assert out["s"] == [
        "Success",
        "Uninitialized",
        "Driver Not Loaded",
        "GPU is lost",
        "RM has detected an NVML/RM version mismatch.",
        "Reset type not supported",
        "Unknown Error",
        "Unknown Error",
    ]
