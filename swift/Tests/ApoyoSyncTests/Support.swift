// What the XCTest cases share: a toy key guard (per "device"), a guard that throws, a counting
// listener that can hold a sync at its start, and the live endpoint scripts/test-swift.sh
// starts (`apoyo serve --dev`): its URL, public key, INE root (and another key folder's), dev
// mailbox and the example images.

import CApoyoSync
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest
@testable import ApoyoSync

/// A toy wrap: a tag, the device byte, the key XORed with a device pattern. Enough to tell
/// devices apart; the real guards are SecureEnclaveKeyGuard (iOS) and the Android Keystore.
final class ToyGuard: KeyGuard {
    let device: UInt8
    init(device: UInt8) { self.device = device }

    func wrap(masterKey: [UInt8], label: [UInt8]) throws -> [UInt8] {
        [0xA5, device] + masterKey.enumerated().map { $1 ^ UInt8(truncatingIfNeeded: Int(device) * 31 + $0) }
    }

    func unwrap(wrappedKey: [UInt8], label: [UInt8]) throws -> [UInt8] {
        guard wrappedKey.count == 34, wrappedKey[0] == 0xA5 else { throw KeyGuardError.unavailable }
        guard wrappedKey[1] == device else { throw KeyGuardError.wrongDevice }
        return wrappedKey[2...].enumerated().map { $1 ^ UInt8(truncatingIfNeeded: Int(device) * 31 + $0) }
    }
}

/// A guard whose platform key is gone: it throws an error of its own.
final class ThrowingGuard: KeyGuard {
    struct Gone: Error {}
    func wrap(masterKey: [UInt8], label: [UInt8]) throws -> [UInt8] { throw Gone() }
    func unwrap(wrappedKey: [UInt8], label: [UInt8]) throws -> [UInt8] { throw Gone() }
}

/// Counts events; with `holdAtStart` it blocks the sync thread at `syncStarted` until released.
final class CountingListener: SyncListener {
    let cond = NSCondition()
    var events: [SyncEvent] = []
    var progress = 0
    var holdAtStart = false
    var started = false
    var released = false

    func onEvent(_ event: SyncEvent) {
        cond.lock()
        defer { cond.unlock() }
        events.append(event)
        if event == .syncStarted && holdAtStart {
            started = true
            cond.broadcast()
            while !released { cond.wait() }
        }
    }

    func onProgress(_ progress: SyncProgress) {
        cond.lock()
        self.progress += 1
        cond.unlock()
    }

    func count(_ state: CaptureState) -> Int {
        cond.lock()
        defer { cond.unlock() }
        return events.filter { if case .capture(_, state, _, _) = $0 { return true } else { return false } }.count
    }

    func hold() {
        cond.lock()
        holdAtStart = true
        cond.unlock()
    }

    func waitUntilStarted() {
        cond.lock()
        while !started { cond.wait() }
        cond.unlock()
    }

    func release() {
        cond.lock()
        released = true
        holdAtStart = false
        cond.broadcast()
        cond.unlock()
    }
}

/// A well-formed INE root line (the Ed25519 base point) for the tests that need no endpoint;
/// no endpoint's receipts chain to it.
let fixedRoot = "apoyo-ine-root-v1 5866666666666666666666666666666666666666666666666666666666666666"

/// The live endpoint and fixtures, from the environment scripts/test-swift.sh sets. A test
/// that needs them FAILS (never skips) when they are missing.
struct Endpoint {
    let url: String
    let publicKey: [UInt8]
    /// The endpoint's INE root line (its key folder's ine-root.pub).
    let ineRoot: String
    /// Another key folder's INE root line: the endpoint's receipts do not chain to it.
    let otherIneRoot: String
    let images: URL

    static func fromEnvironment(file: StaticString = #filePath, line: UInt = #line) throws -> Endpoint {
        let env = Foundation.ProcessInfo.processInfo.environment
        guard let url = env["APOYO_TEST_ENDPOINT"], let key = env["APOYO_TEST_ENDPOINT_KEY"],
              let root = env["APOYO_TEST_INE_ROOT"], let other = env["APOYO_TEST_OTHER_INE_ROOT"],
              let images = env["APOYO_TEST_IMAGES"]
        else {
            XCTFail("APOYO_TEST_ENDPOINT, APOYO_TEST_ENDPOINT_KEY, APOYO_TEST_INE_ROOT, APOYO_TEST_OTHER_INE_ROOT and APOYO_TEST_IMAGES are not set: run scripts/test-swift.sh", file: file, line: line)
            throw ApoyoError(code: .invalidArgument, rawCode: 103, message: "no endpoint")
        }
        return Endpoint(
            url: url, publicKey: hex(key), ineRoot: root, otherIneRoot: other, images: URL(fileURLWithPath: images))
    }

    var provisioning: Provisioning { Provisioning(endpointPublicKey: publicKey, ineRoot: ineRoot) }

    func image(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: images.appendingPathComponent(name)))
    }

    func capture(process: String, clave: String) throws -> Capture {
        var c = Capture(
            processId: process, model: "G", claveElector: clave, front: try image("front.jpg"),
            back: try image("back.jpg"), selfie: try image("selfie.jpg"), signature: try image("signature.png"))
        c.location = .init(lat: 19.43, lon: -99.13, accuracyMeters: 8)
        return c
    }

    /// The activation code the dev endpoint "emailed" to `email`.
    func mailboxCode(_ email: String) async throws -> String {
        let (data, _) = try await URLSession.shared.data(from: URL(string: "\(url)/v1/dev/mailbox/\(email)")!)
        struct Mail: Decodable { let code: String }
        return try JSONDecoder().decode(Mail.self, from: data).code
    }
}

func hex(_ s: String) -> [UInt8] {
    var out: [UInt8] = []
    var i = s.startIndex
    while i < s.endIndex, let j = s.index(i, offsetBy: 2, limitedBy: s.endIndex) {
        out.append(UInt8(s[i..<j], radix: 16) ?? 0)
        i = j
    }
    return out
}

/// A fresh folder for stores, removed by the caller.
func temporaryDirectory() throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("apoyo-swift-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// Asserts `body` throws an `ApoyoError` with `code` and a non-empty message; returns it.
@discardableResult
func assertThrows<T>(
    _ code: ErrorCode, _ body: @autoclosure () throws -> T, file: StaticString = #filePath, line: UInt = #line
) -> ApoyoError? {
    do {
        _ = try body()
        XCTFail("expected \(code), got success", file: file, line: line)
    } catch let e as ApoyoError {
        XCTAssertEqual(e.code, code, "\(e)", file: file, line: line)
        XCTAssertFalse(e.message.isEmpty, "no message for \(code)", file: file, line: line)
        return e
    } catch {
        XCTFail("expected ApoyoError \(code), got \(error)", file: file, line: line)
    }
    return nil
}
