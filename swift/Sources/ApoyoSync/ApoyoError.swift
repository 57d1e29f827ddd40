// The error every throwing call of the package throws, and the one place a C result code is
// turned into it (with the message of `apoyo_last_error_message`, which never holds personal
// data). Buffers the library hands over are copied and freed here, exactly once.

import CApoyoSync

/// A failed call: the code and the library's message (no personal data in either).
public struct ApoyoError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The code; `.internal` when a newer library returned a number this package does not know
    /// (then `rawCode` holds it).
    public let code: ErrorCode
    public let rawCode: Int32
    public let message: String

    public var description: String { "ApoyoError.\(code) (\(rawCode)): \(message)" }
}

/// Copies the bytes of a library buffer and frees it.
func take(_ buffer: ApoyoBuffer) -> [UInt8] {
    defer { apoyo_buffer_free(buffer) }
    guard let ptr = buffer.ptr, buffer.len > 0 else { return [] }
    return Array(UnsafeBufferPointer(start: ptr, count: buffer.len))
}

/// The message of this thread's last failed call.
func lastErrorMessage() -> String {
    var buffer = ApoyoBuffer(ptr: nil, len: 0)
    guard apoyo_last_error_message(&buffer) == 0 else { return "(no message)" }
    return String(decoding: take(buffer), as: UTF8.self)
}

/// Turns a result code into success or a thrown ``ApoyoError``. Must run on the thread that
/// made the call (the message is per thread).
func check(_ rc: Int32) throws {
    guard rc != 0 else { return }
    let message = lastErrorMessage()
    throw ApoyoError(code: ErrorCode(rawValue: rc) ?? .internal, rawCode: rc, message: message)
}

/// Lends `bytes` to the library as an `ApoyoSlice` for the duration of `body`.
func withSlice<R>(_ bytes: [UInt8], _ body: (ApoyoSlice) throws -> R) rethrows -> R {
    try bytes.withUnsafeBufferPointer { b in
        try body(ApoyoSlice(ptr: b.baseAddress, len: b.count))
    }
}

func withSlice<R>(_ text: String, _ body: (ApoyoSlice) throws -> R) rethrows -> R {
    try withSlice(Array(text.utf8), body)
}
