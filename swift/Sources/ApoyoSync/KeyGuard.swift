// The app's key guard: wraps and unwraps the store's 32-byte master key with a key the
// platform holds (the Keychain / Secure Enclave on iOS, see SecureEnclaveKeyGuard.swift), and
// the C callbacks that carry it across the ABI. The library calls the guard only inside
// `SyncEngine.create` / `SyncEngine.open`, on the calling thread.

import CApoyoSync

/// What a guard throws to say why it refused; any other error counts as `.unavailable`.
public enum KeyGuardError: Error, Sendable {
    /// The platform key is not available now (device locked before first unlock, key deleted).
    /// The engine reports ``ErrorCode/keyUnavailable``.
    case unavailable
    /// The wrapped key was not made by this device's key (a store copied from another phone).
    /// The engine reports ``ErrorCode/wrongDevice``.
    case wrongDevice
}

/// Wraps the store's master key with a platform key. `label` binds the wrap to the store: a
/// guard should authenticate it (e.g. as associated data) and refuse a wrap made for another.
public protocol KeyGuard: AnyObject {
    /// Returns the wrapped form of the 32-byte `masterKey` (at most
    /// `APOYO_GUARD_MAX_WRAPPED` = 1024 bytes); the library stores it in the store's keyring.
    func wrap(masterKey: [UInt8], label: [UInt8]) throws -> [UInt8]
    /// Returns the 32-byte master key from its wrapped form.
    func unwrap(wrappedKey: [UInt8], label: [UInt8]) throws -> [UInt8]
}

private final class GuardBox {
    let keyGuard: KeyGuard
    init(_ keyGuard: KeyGuard) { self.keyGuard = keyGuard }
}

private func guardCode(_ error: Error) -> Int32 {
    if case KeyGuardError.wrongDevice = error { return Int32(APOYO_GUARD_WRONG_DEVICE) }
    return Int32(APOYO_GUARD_UNAVAILABLE)
}

private func bytes(_ s: ApoyoSlice) -> [UInt8] {
    guard let p = s.ptr, s.len > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: p, count: s.len))
}

/// Overwrites a copy of key material before it is released (best effort: Swift may have made
/// other copies; the library zeroes its own).
private func wipe(_ b: inout [UInt8]) {
    for i in b.indices { b[i] = 0 }
}

private let wrapCallback: @convention(c) (
    UnsafeMutableRawPointer?, ApoyoSlice, ApoyoSlice, UnsafeMutablePointer<UInt8>?, Int,
    UnsafeMutablePointer<Int>?
) -> Int32 = { ctx, label, key, out, cap, outLen in
    guard let ctx, let out, let outLen else { return Int32(APOYO_GUARD_UNAVAILABLE) }
    let box = Unmanaged<GuardBox>.fromOpaque(ctx).takeUnretainedValue()
    var master = bytes(key)
    defer { wipe(&master) }
    do {
        let wrapped = try box.keyGuard.wrap(masterKey: master, label: bytes(label))
        guard !wrapped.isEmpty, wrapped.count <= cap else { return Int32(APOYO_GUARD_UNAVAILABLE) }
        wrapped.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: wrapped.count) }
        outLen.pointee = wrapped.count
        return Int32(APOYO_GUARD_OK)
    } catch {
        return guardCode(error)
    }
}

private let unwrapCallback: @convention(c) (
    UnsafeMutableRawPointer?, ApoyoSlice, ApoyoSlice, UnsafeMutablePointer<UInt8>?
) -> Int32 = { ctx, label, wrapped, outKey in
    guard let ctx, let outKey else { return Int32(APOYO_GUARD_UNAVAILABLE) }
    let box = Unmanaged<GuardBox>.fromOpaque(ctx).takeUnretainedValue()
    do {
        var master = try box.keyGuard.unwrap(wrappedKey: bytes(wrapped), label: bytes(label))
        defer { wipe(&master) }
        guard master.count == 32 else { return Int32(APOYO_GUARD_UNAVAILABLE) }
        master.withUnsafeBufferPointer { outKey.update(from: $0.baseAddress!, count: 32) }
        return Int32(APOYO_GUARD_OK)
    } catch {
        return guardCode(error)
    }
}

/// Lends `keyGuard` to the library as an `ApoyoKeyGuard` for the duration of `body` (the
/// library uses it only during the call).
func withCKeyGuard<R>(_ keyGuard: KeyGuard, _ body: (UnsafePointer<ApoyoKeyGuard>) throws -> R) rethrows -> R {
    let box = GuardBox(keyGuard)
    return try withExtendedLifetime(box) {
        var c = ApoyoKeyGuard(
            ctx: Unmanaged.passUnretained(box).toOpaque(), wrap: wrapCallback, unwrap: unwrapCallback)
        return try withUnsafePointer(to: &c) { try body($0) }
    }
}
