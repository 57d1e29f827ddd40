// The values the app passes in and gets back: provisioning, options, a capture, network and
// policy, status, a sync report, and the list rows (decoded from the library's JSON).

import CApoyoSync
import Foundation

/// What INE ships in the app: the endpoint's X25519 public key (32 bytes), the INE root, its
/// CA (PEM) and SubjectPublicKeyInfo SHA-256 pins (32 bytes each). TLS trusts these, not the
/// platform store.
///
/// `ineRoot` is required (protocol v1.1): the Ed25519 key that certifies the endpoint's keys,
/// as INE provisions it, the line `apoyo-ine-root-v1 <64 hex>` (the endpoint's `ine-root.pub`).
/// A capture is deleted only on a receipt that chains to it. Empty or not an INE root line:
/// `SyncEngine.create` / `open` throw `.invalidArgument`.
public struct Provisioning: Sendable {
    public var endpointPublicKey: [UInt8]
    public var ineRoot: String
    public var caPEM: String
    public var pins: [[UInt8]]

    public init(endpointPublicKey: [UInt8], ineRoot: String, caPEM: String = "", pins: [[UInt8]] = []) {
        self.endpointPublicKey = endpointPublicKey
        self.ineRoot = ineRoot
        self.caPEM = caPEM
        self.pins = pins
    }
}

/// Engine settings.
public struct EngineOptions: Sendable {
    /// Free bytes that must remain after a capture; `nil` for the library's default (64 MiB).
    public var diskReserveBytes: UInt64?
    /// At creation: the auxiliar's registration id, or `nil` for the citizen's own phone.
    public var auxiliarId: String?

    public init(diskReserveBytes: UInt64? = nil, auxiliarId: String? = nil) {
        self.diskReserveBytes = diskReserveBytes
        self.auxiliarId = auxiliarId
    }
}

/// Who validated the email at registration.
public enum Provider: Int32, Sendable { case google = 0, facebook = 1 }

/// The link the phone is on now (from `NWPathMonitor`).
public enum Network: Int32, Sendable { case none = 0, wifi = 1, cellular = 2, metered = 3 }

/// "Wi-Fi only", and the most bytes a sync may send on cellular or metered links from now on
/// (wire bytes, retries included; never overshot).
public struct NetworkPolicy: Sendable {
    public var wifiOnly: Bool
    public var cellularAllowanceBytes: UInt64?

    public init(wifiOnly: Bool = false, cellularAllowanceBytes: UInt64? = nil) {
        self.wifiOnly = wifiOnly
        self.cellularAllowanceBytes = cellularAllowanceBytes
    }
}

/// One supporter's record: the card fields, process, model, location, and the four images
/// (JPEG/PNG). Encoded as the JSON description `apoyo_engine_capture` takes.
public struct Capture: Sendable {
    public struct Location: Encodable, Sendable {
        public var lat: Double, lon: Double, accuracyMeters: Double
        public init(lat: Double, lon: Double, accuracyMeters: Double) {
            (self.lat, self.lon, self.accuracyMeters) = (lat, lon, accuracyMeters)
        }
        enum CodingKeys: String, CodingKey { case lat, lon, accuracyMeters = "accuracy_m" }
    }

    public var processId: String
    public var model: String
    public var claveElector: String
    public var entidad: Int?
    public var seccion: Int?
    public var vigencia: Int?
    public var location: Location?
    public var auxiliarId: String?
    public var front: [UInt8], back: [UInt8], selfie: [UInt8], signature: [UInt8]

    public init(
        processId: String, model: String, claveElector: String, front: [UInt8], back: [UInt8],
        selfie: [UInt8], signature: [UInt8]
    ) {
        (self.processId, self.model, self.claveElector) = (processId, model, claveElector)
        (self.front, self.back, self.selfie, self.signature) = (front, back, selfie, signature)
    }

    private struct Fields: Encodable {
        let clave_elector: String
        let entidad: Int?, seccion: Int?, vigencia: Int?
    }

    private struct Description: Encodable {
        let process_id: String, model: String, fields: Fields
        let location: Location?, auxiliar_id: String?
    }

    func descriptionJSON() throws -> [UInt8] {
        let d = Description(
            process_id: processId, model: model,
            fields: Fields(clave_elector: claveElector, entidad: entidad, seccion: seccion, vigencia: vigencia),
            location: location, auxiliar_id: auxiliarId)
        return Array(try JSONEncoder().encode(d))
    }
}

/// What a status screen shows (never waits for a running sync).
public struct SyncStatus: Equatable, Sendable {
    public let captured, uploading, committed, quarantined, purged, pendingBytes: UInt64
    public let syncing, registered: Bool
    /// When the activation ends; `nil` when not activated.
    public let activatedUntil: Date?
    public let network: Network
    public let meteredBytes, totalBytes: UInt64

    init(_ s: ApoyoStatus) {
        (captured, uploading, committed) = (s.captured, s.uploading, s.committed)
        (quarantined, purged, pendingBytes) = (s.quarantined, s.purged, s.pending_bytes)
        (syncing, registered) = (s.syncing, s.registered)
        activatedUntil = s.activated_until == 0 ? nil : Date(timeIntervalSince1970: TimeInterval(s.activated_until))
        network = Network(rawValue: s.network) ?? .none
        (meteredBytes, totalBytes) = (s.metered_bytes, s.total_bytes)
    }
}

/// Why a sync run stopped.
public enum StopReason: Int32, Sendable {
    case drained = 0, budget, needsActivation, cancelled, noNetwork, wifiOnly, cellularCapReached
}

/// What a sync run did.
public struct SyncReport: Equatable, Sendable {
    public let committed, duplicates, quarantined, pending, bytesSent, retries: UInt64
    public let stopped: StopReason

    init(_ r: ApoyoSyncReport) throws {
        (committed, duplicates, quarantined) = (r.committed, r.duplicates, r.quarantined)
        (pending, bytesSent, retries) = (r.pending, r.bytes_sent, r.retries)
        guard let stop = StopReason(rawValue: r.stopped) else {
            throw ApoyoError(code: .internal, rawCode: ErrorCode.internal.rawValue,
                             message: "unknown stop reason \(r.stopped)")
        }
        stopped = stop
    }
}

/// A capture still on the device (no personal data).
public struct CaptureInfo: Decodable, Equatable, Sendable {
    public let id: String
    public let processId: String
    public let state: CaptureState
    /// The endpoint's reason for a quarantine, or the last transient failure.
    public let reason: String?
    public let attempts: UInt32
    enum CodingKeys: String, CodingKey { case id, processId = "process_id", state, reason, attempts }
}

/// A receipt the endpoint signed, re-verified when listed.
public struct Receipt: Decodable, Equatable, Sendable {
    public let captureId: String
    /// `counted` or `duplicate` (the citizen was already counted; see `firstCaptureId`).
    public let result: String
    public let countedAt: String
    public let firstCaptureId: String?
    public let verified: Bool
    enum CodingKeys: String, CodingKey {
        case captureId = "capture_id", result, countedAt = "counted_at"
        case firstCaptureId = "first_capture_id", verified
    }
}

/// A process the app can capture for.
public struct SupportProcess: Decodable, Equatable, Sendable {
    public let id: String
    public let name: String
}
