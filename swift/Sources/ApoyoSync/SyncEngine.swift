// `SyncEngine`: the app's handle on one store. It owns the C handle (closed in `deinit`),
// turns every call into Swift values or a thrown `ApoyoError`, and runs a sync on its own
// thread for `async` callers, cancelling it when their task is cancelled.

import CApoyoSync
import Foundation

/// One open store. Thread-safe: a sync runs while other threads capture, read the status,
/// change the network or cancel (the library serializes what must be serialized).
public final class SyncEngine: @unchecked Sendable {
    // @unchecked: the only state is the handle, an immutable registry key the library checks
    // on every call (a closed one gives `.engineClosed`), safe from any thread.
    private let handle: OpaquePointer?

    private init(handle: OpaquePointer?) { self.handle = handle }

    deinit { _ = apoyo_engine_close(handle) }

    /// The library's version.
    public static var version: String { String(cString: apoyo_version()) }

    /// Creates a new store in `directory`, its master key wrapped by `keyGuard`, and opens it.
    public static func create(
        directory: String, keyGuard: KeyGuard, provisioning: Provisioning, options: EngineOptions = EngineOptions()
    ) throws -> SyncEngine {
        try start(apoyo_engine_init, directory, keyGuard, provisioning, options)
    }

    /// Opens the store in `directory`. A store that cannot be opened is left untouched and
    /// reported (`.corruptStore`, `.storeVersion`, `.wrongDevice`, …): see ``setAside(directory:)``.
    public static func open(
        directory: String, keyGuard: KeyGuard, provisioning: Provisioning, options: EngineOptions = EngineOptions()
    ) throws -> SyncEngine {
        try start(apoyo_engine_open, directory, keyGuard, provisioning, options)
    }

    /// Moves an unusable store aside (every byte kept); returns where it went.
    public static func setAside(directory: String) throws -> String {
        var out = ApoyoBuffer(ptr: nil, len: 0)
        try withSlice(directory) { try check(apoyo_set_aside($0, &out)) }
        return String(decoding: take(out), as: UTF8.self)
    }

    private typealias Opener = (
        ApoyoSlice, UnsafePointer<ApoyoKeyGuard>?, UnsafePointer<ApoyoProvisioning>?,
        UnsafePointer<ApoyoOptions>?, UnsafeMutablePointer<OpaquePointer?>?
    ) -> Int32

    private static func start(
        _ opener: Opener, _ directory: String, _ keyGuard: KeyGuard, _ p: Provisioning, _ o: EngineOptions
    ) throws -> SyncEngine {
        var handle: OpaquePointer?
        let pins = p.pins.flatMap { $0 }
        try withSlice(directory) { dir in
            try withSlice(p.endpointPublicKey) { key in
                try withSlice(p.caPEM) { ca in
                    try withSlice(pins) { pinSlice in
                        try withSlice(p.ineRoot) { root in
                            try withSlice(o.auxiliarId ?? "") { aux in
                                var prov = ApoyoProvisioning(
                                    endpoint_public_key: key, ca_pem: ca, pins: pinSlice, ine_root: root)
                                var opts = ApoyoOptions(
                                    disk_reserve_bytes: o.diskReserveBytes ?? UInt64.max, auxiliar_id: aux)
                                try withCKeyGuard(keyGuard) { g in try check(opener(dir, g, &prov, &opts, &handle)) }
                            }
                        }
                    }
                }
            }
        }
        return SyncEngine(handle: handle)
    }

    /// Closes the engine: cancels a running sync, waits for it, releases the store and the
    /// listener. Closing again is harmless; any other call afterwards throws `.engineClosed`.
    public func close() throws { try check(apoyo_engine_close(handle)) }

    /// Registers the device with the endpoint at `url`; the endpoint emails an activation
    /// code. Returns when the code expires.
    public func register(url: String, email: String, provider: Provider, front: [UInt8]) throws -> Date {
        var expires: Int64 = 0
        try withSlice(url) { u in
            try withSlice(email) { m in
                try withSlice(front) { f in
                    try check(apoyo_engine_register(handle, u, m, provider.rawValue, f, &expires))
                }
            }
        }
        return Date(timeIntervalSince1970: TimeInterval(expires))
    }

    /// Activates the device with the emailed code; returns when the activation ends.
    public func activate(code: String) throws -> Date {
        var expires: Int64 = 0
        try withSlice(code) { try check(apoyo_engine_activate(handle, $0, &expires)) }
        return Date(timeIntervalSince1970: TimeInterval(expires))
    }

    /// Adds or replaces process definitions (a JSON list); returns how many.
    public func addProcesses(json: String) throws -> Int {
        var n: UInt32 = 0
        try withSlice(json) { try check(apoyo_engine_add_processes(handle, $0, &n)) }
        return Int(n)
    }

    public func processes() throws -> [SupportProcess] {
        try list(apoyo_engine_processes)
    }

    /// Validates, encrypts and durably stores a capture; returns its id once it is durable.
    public func capture(_ c: Capture) throws -> String {
        var out = ApoyoBuffer(ptr: nil, len: 0)
        let description = try c.descriptionJSON()
        try withSlice(description) { d in
            try withSlice(c.front) { f in
                try withSlice(c.back) { b in
                    try withSlice(c.selfie) { s in
                        try withSlice(c.signature) { sig in
                            try check(apoyo_engine_capture(handle, d, f, b, s, sig, &out))
                        }
                    }
                }
            }
        }
        return String(decoding: take(out), as: UTF8.self)
    }

    public func status() throws -> SyncStatus {
        var s = ApoyoStatus()
        try check(apoyo_engine_status(handle, &s))
        return SyncStatus(s)
    }

    /// The captures still on the device.
    public func captures() throws -> [CaptureInfo] { try list(apoyo_engine_captures) }

    /// The endpoint's receipts, re-verified.
    public func receipts() throws -> [Receipt] { try list(apoyo_engine_receipts) }

    /// This device's id (hex).
    public func deviceId() throws -> String {
        var out = ApoyoBuffer(ptr: nil, len: 0)
        try check(apoyo_engine_device_id(handle, &out))
        return String(decoding: take(out), as: UTF8.self)
    }

    /// Queues a quarantined capture again.
    public func retry(captureId: String) throws {
        try withSlice(captureId) { try check(apoyo_engine_retry(handle, $0)) }
    }

    /// Says which link the phone is on now; also during a sync.
    public func setNetwork(_ network: Network) throws {
        try check(apoyo_engine_set_network(handle, network.rawValue))
    }

    /// Sets the network policy and starts a new cellular allowance.
    public func setNetworkPolicy(_ policy: NetworkPolicy) throws {
        var p = ApoyoNetworkPolicy(
            wifi_only: policy.wifiOnly, cellular_allowance_bytes: policy.cellularAllowanceBytes ?? UInt64.max)
        try check(apoyo_engine_set_network_policy(handle, &p))
    }

    /// Registers the listener (`nil` removes it). The engine holds it until it is replaced or
    /// the engine is closed.
    public func setListener(_ listener: SyncListener?) throws { try setCListener(handle, listener) }

    /// Asks a running sync to stop at its next exchange. Callable from any thread.
    public func cancel() throws { try check(apoyo_engine_cancel(handle)) }

    /// Sends what is due within `budgetMilliseconds` (0: the library's default, 9 minutes),
    /// blocking the calling thread. Transport failures are not errors: they are rescheduled.
    public func syncBlocking(budgetMilliseconds: UInt64 = 0) throws -> SyncReport {
        var r = ApoyoSyncReport()
        try check(apoyo_engine_sync(handle, budgetMilliseconds, &r))
        return try SyncReport(r)
    }

    /// Sends what is due within `budgetMilliseconds` on a thread of its own (the cooperative
    /// pool is never blocked). Cancelling the calling task cancels the run, which then returns
    /// with `stopped == .cancelled`.
    public func sync(budgetMilliseconds: UInt64 = 0) async throws -> SyncReport {
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (k: CheckedContinuation<SyncReport, Error>) in
                // The thread holds the engine only while the run lasts: were it the last
                // reference, `deinit` (and the library's close) would otherwise run while the
                // thread's thread-locals are being destroyed.
                var engine: SyncEngine? = self
                let thread = Thread {
                    let result = Result { () throws -> SyncReport in
                        guard let e = engine else { throw ApoyoError(code: .internal, rawCode: 99, message: "no engine") }
                        return try e.syncBlocking(budgetMilliseconds: budgetMilliseconds)
                    }
                    engine = nil
                    k.resume(with: result)
                }
                thread.name = "apoyo-sync"
                thread.start()
            }
        } onCancel: {
            try? self.cancel()
        }
    }

    private func list<T: Decodable>(
        _ f: (OpaquePointer?, UnsafeMutablePointer<ApoyoBuffer>?) -> Int32
    ) throws -> [T] {
        var out = ApoyoBuffer(ptr: nil, len: 0)
        try check(f(handle, &out))
        let json = take(out)
        do {
            return try JSONDecoder().decode([T].self, from: Data(json))
        } catch {
            throw ApoyoError(code: .internal, rawCode: ErrorCode.internal.rawValue,
                             message: "the library's \(T.self) list did not decode")
        }
    }
}
