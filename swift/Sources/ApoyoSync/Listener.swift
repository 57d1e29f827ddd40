// Events and progress the engine pushes to the app (`apoyo_engine_set_listener`): each
// capture's state change, why a sync waits, a run's start and end. The library calls the
// listener on the thread doing the work (the sync thread for sync events), so an app hands
// what it gets to its main actor. Events carry ids, states and reason codes only.

import CApoyoSync
import Foundation

/// A capture's queue state.
public enum CaptureState: String, Decodable, Sendable {
    case captured, uploading, committed, purged, quarantined
}

/// Something the app may show, decoded from the library's JSON event.
public enum SyncEvent: Equatable, Sendable {
    /// A capture changed state (or was rescheduled: same state, a new `nextAttemptAt`).
    case capture(id: String, state: CaptureState, reason: String?, nextAttemptAt: String?)
    case syncStarted
    /// A run waits and sends nothing: `no_network`, `wifi_only`, `cellular_cap_reached`,
    /// `backoff` (until `until`, RFC 3339) or `needs_activation`.
    case syncWaiting(reason: String, until: String?)
    case syncFinished
    /// An event this version of the package does not know (its JSON).
    case other(json: String)
}

/// A progress snapshot: captures done in this run, still pending, request bytes sent.
public struct SyncProgress: Equatable, Sendable {
    public let done: UInt64
    public let pending: UInt64
    public let bytesSent: UInt64
}

/// The app's subscriber (both methods have empty defaults). Keep them short.
public protocol SyncListener: AnyObject {
    func onEvent(_ event: SyncEvent)
    func onProgress(_ progress: SyncProgress)
}

extension SyncListener {
    public func onEvent(_ event: SyncEvent) {}
    public func onProgress(_ progress: SyncProgress) {}
}

private struct RawEvent: Decodable {
    let event: String
    let id: String?
    let state: CaptureState?
    let reason: String?
    let next_attempt_at: String?
    let wait: String?
    let until: String?
}

extension SyncEvent {
    init(json: [UInt8]) {
        let text = String(decoding: json, as: UTF8.self)
        guard let raw = try? JSONDecoder().decode(RawEvent.self, from: Data(json)) else {
            self = .other(json: text)
            return
        }
        switch raw.event {
        case "capture":
            guard let id = raw.id, let state = raw.state else { self = .other(json: text); return }
            self = .capture(id: id, state: state, reason: raw.reason, nextAttemptAt: raw.next_attempt_at)
        case "sync_started": self = .syncStarted
        case "sync_waiting": self = .syncWaiting(reason: raw.wait ?? "", until: raw.until)
        case "sync_finished": self = .syncFinished
        default: self = .other(json: text)
        }
    }
}

private final class ListenerBox {
    let listener: SyncListener
    init(_ listener: SyncListener) { self.listener = listener }
}

private let onEventCallback: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<UInt8>?, Int) -> Void = {
    ctx, json, len in
    guard let ctx, let json else { return }
    let box = Unmanaged<ListenerBox>.fromOpaque(ctx).takeUnretainedValue()
    box.listener.onEvent(SyncEvent(json: Array(UnsafeBufferPointer(start: json, count: len))))
}

private let onProgressCallback: @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<ApoyoProgress>?) -> Void = {
    ctx, p in
    guard let ctx, let p else { return }
    let box = Unmanaged<ListenerBox>.fromOpaque(ctx).takeUnretainedValue()
    box.listener.onProgress(
        SyncProgress(done: p.pointee.done, pending: p.pointee.pending, bytesSent: p.pointee.bytes_sent))
}

/// Releases the box the library held; called once, when the listener is replaced or the
/// engine closed.
private let destroyCallback: @convention(c) (UnsafeMutableRawPointer?) -> Void = { ctx in
    guard let ctx else { return }
    Unmanaged<ListenerBox>.fromOpaque(ctx).release()
}

/// Hands `listener` to the library (it holds a strong reference until `destroy`).
func setCListener(_ handle: OpaquePointer?, _ listener: SyncListener?) throws {
    guard let listener else {
        try check(apoyo_engine_set_listener(handle, nil))
        return
    }
    let ctx = Unmanaged.passRetained(ListenerBox(listener)).toOpaque()
    var c = ApoyoListener(
        ctx: ctx, on_event: onEventCallback, on_progress: onProgressCallback, destroy: destroyCallback)
    let rc = apoyo_engine_set_listener(handle, &c)
    if rc != 0 {
        // Refused: the library did not take it, so `destroy` will not come.
        Unmanaged<ListenerBox>.fromOpaque(ctx).release()
    }
    try check(rc)
}
