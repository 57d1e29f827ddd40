// Every error code of the C ABI (`ApoyoCode` in include/apoyo_sync.h), one case per code with
// the header's number: 1–99 are the core's `ErrorCode` numbers (appended, never renumbered),
// 100 and up the bridge's own. `APOYO_CODE_OK` (0) is success and never thrown, so it has no
// case. scripts/check-error-codes.sh fails when this list and the header differ.

/// Why a call into the engine failed. Thrown inside an ``ApoyoError`` (with the library's
/// message): `catch let e as ApoyoError where e.code == .duplicate { … }`.
public enum ErrorCode: Int32, CaseIterable, Sendable {
    // Input the core refused (the capture, the process list, a code).
    case invalid = 1
    case modelNotAccepted = 2
    case credentialExpired = 3
    case outOfScope = 4
    case unknownProcess = 5
    case processClosed = 6
    case invalidProcess = 7
    case duplicate = 8
    case storageFull = 9
    case unknownCapture = 10
    case captureGone = 11
    // Keys and ciphertext.
    case keyUnavailable = 20
    case wrongDevice = 21
    case integrity = 22
    case ciphertextVersion = 23
    // The store on the device.
    case noStore = 30
    case storeExists = 31
    case storeBusy = 32
    case corruptStore = 33
    case storeVersion = 34
    case keyringInsideStore = 35
    // The endpoint and the engine's life cycle.
    case decode = 40
    case tooLarge = 41
    case notRegistered = 42
    case notActivated = 43
    case activation = 44
    case transient = 45
    case rejected = 46
    case badReceipt = 47
    case engineClosed = 48
    case syncRunning = 49
    // Lower layers and bugs.
    case sqlite = 90
    case io = 91
    case crypto = 92
    case `internal` = 99
    // The bridge's own.
    case nullPointer = 100
    case invalidHandle = 101
    case panic = 102
    case invalidArgument = 103
}

extension ErrorCode {
    /// The broad class of a code, for an app that reacts per class (as the Java API's
    /// exception types do).
    public enum Kind: Sendable {
        /// The input was refused: show it to the user, fix it, try again.
        case input
        /// The device key or a ciphertext: the store may need setting aside.
        case key
        /// The store on the device, its files and the disk.
        case store
        /// Registration, activation, the endpoint, or the engine's state.
        case engine
        /// A bug in the library or a misuse of the API; report it.
        case bug
    }

    public var kind: Kind {
        switch rawValue {
        case 1...11: return .input
        case 20...23: return .key
        case 30...35, 90, 91: return .store
        case 40...49: return .engine
        default: return .bug
        }
    }
}
