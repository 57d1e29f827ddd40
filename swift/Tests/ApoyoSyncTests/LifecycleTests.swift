// The engine's life cycle without an endpoint: opening errors, a key guard that throws or
// belongs to another device, close twice, use after close, `deinit` closing the store, and
// setting an unusable store aside.

import Foundation
import XCTest
@testable import ApoyoSync

final class LifecycleTests: XCTestCase {
    private var dir: URL!
    private let prov = Provisioning(endpointPublicKey: [UInt8](repeating: 9, count: 32), ineRoot: fixedRoot)

    override func setUpWithError() throws { dir = try temporaryDirectory() }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private var store: String { dir.appendingPathComponent("store").path }

    func testOpeningErrors() throws {
        assertThrows(.noStore, try SyncEngine.open(directory: store, keyGuard: ToyGuard(device: 1), provisioning: prov))
        assertThrows(.invalidArgument, try SyncEngine.create(directory: "", keyGuard: ToyGuard(device: 1), provisioning: prov))
        let shortKey = Provisioning(endpointPublicKey: [UInt8](repeating: 9, count: 31), ineRoot: fixedRoot)
        assertThrows(.invalidArgument, try SyncEngine.create(directory: store, keyGuard: ToyGuard(device: 1), provisioning: shortKey))
        let badPins = Provisioning(endpointPublicKey: prov.endpointPublicKey, ineRoot: fixedRoot, pins: [[1, 2, 3]])
        assertThrows(.invalidArgument, try SyncEngine.create(directory: store, keyGuard: ToyGuard(device: 1), provisioning: badPins))

        let engine = try SyncEngine.create(directory: store, keyGuard: ToyGuard(device: 1), provisioning: prov)
        assertThrows(.storeExists, try SyncEngine.create(directory: store, keyGuard: ToyGuard(device: 1), provisioning: prov))
        assertThrows(.storeBusy, try SyncEngine.open(directory: store, keyGuard: ToyGuard(device: 1), provisioning: prov))
        XCTAssertEqual(try engine.deviceId().count, 32)
        assertThrows(.notRegistered, try engine.activate(code: "ABCDEFGHIJ"))
        assertThrows(.invalidProcess, try engine.addProcesses(json: "[{]"))
        assertThrows(.invalidArgument, try engine.retry(captureId: "not-an-id"))
        assertThrows(.unknownCapture, try engine.retry(captureId: "0193a3c4-0000-7000-8000-000000000000"))
        try engine.close()
    }

    /// Protocol v1.1: the INE root is required, as the line INE provisions; nothing is created
    /// without it.
    func testAMissingOrMalformedIneRootIsRefused() throws {
        let g = ToyGuard(device: 1)
        func refused(_ root: String) -> ApoyoError? {
            var p = prov
            p.ineRoot = root
            return assertThrows(.invalidArgument, try SyncEngine.create(directory: store, keyGuard: g, provisioning: p))
        }
        let missing = refused("")
        XCTAssertTrue(missing?.message.contains("ine_root is required") ?? false, "\(String(describing: missing))")
        refused(" \n")
        let hexPart = String(fixedRoot.split(separator: " ")[1])
        let sealLine = refused("apoyo-seal-pub-v1 \(hexPart)")
        XCTAssertTrue(sealLine?.message.contains("ine_root") ?? false)
        XCTAssertFalse(sealLine?.message.contains(hexPart) ?? true, "the message never echoes the key")
        refused(hexPart)
        refused("apoyo-ine-root-v1 " + String(repeating: "00", count: 32))
        XCTAssertFalse(FileManager.default.fileExists(atPath: store), "nothing created without a root")
        try SyncEngine.create(directory: store, keyGuard: g, provisioning: prov).close()
    }

    func testAKeyGuardThatThrows() throws {
        let e = assertThrows(.keyUnavailable, try SyncEngine.create(directory: store, keyGuard: ThrowingGuard(), provisioning: prov))
        XCTAssertFalse(e?.message.contains("Gone") ?? true, "the guard's own error stays in the app")
        // The store made with one device's guard: another device's guard is refused, a guard
        // that throws reports the key unavailable, the right one opens it.
        try SyncEngine.create(directory: store, keyGuard: ToyGuard(device: 7), provisioning: prov).close()
        assertThrows(.wrongDevice, try SyncEngine.open(directory: store, keyGuard: ToyGuard(device: 8), provisioning: prov))
        assertThrows(.keyUnavailable, try SyncEngine.open(directory: store, keyGuard: ThrowingGuard(), provisioning: prov))
        try SyncEngine.open(directory: store, keyGuard: ToyGuard(device: 7), provisioning: prov).close()
    }

    func testCloseTwiceAndUseAfterClose() async throws {
        let engine = try SyncEngine.create(directory: store, keyGuard: ToyGuard(device: 1), provisioning: prov)
        let listener = CountingListener()
        try engine.setListener(listener)
        try engine.close()
        XCTAssertNoThrow(try engine.close(), "closing twice is harmless")
        assertThrows(.engineClosed, try engine.status())
        assertThrows(.engineClosed, try engine.cancel())
        assertThrows(.engineClosed, try engine.setNetwork(.wifi))
        assertThrows(.engineClosed, try engine.setListener(nil))
        assertThrows(.engineClosed, try engine.captures())
        do {
            _ = try await engine.sync()
            XCTFail("sync after close succeeded")
        } catch let e as ApoyoError where e.code == .engineClosed {
        }
    }

    func testDeinitClosesTheStore() throws {
        weak var weakListener: CountingListener?
        do {
            let engine = try SyncEngine.create(directory: store, keyGuard: ToyGuard(device: 1), provisioning: prov)
            let listener = CountingListener()
            weakListener = listener
            try engine.setListener(listener)
        }
        XCTAssertNil(weakListener, "the listener was released when the engine went away")
        // Had deinit not closed it, the store would still be busy.
        try SyncEngine.open(directory: store, keyGuard: ToyGuard(device: 1), provisioning: prov).close()
    }

    func testSetAside() throws {
        try SyncEngine.create(directory: store, keyGuard: ToyGuard(device: 1), provisioning: prov).close()
        let moved = try SyncEngine.setAside(directory: store)
        XCTAssertTrue(moved.contains("set-aside"), moved)
        XCTAssertTrue(FileManager.default.fileExists(atPath: moved))
        assertThrows(.noStore, try SyncEngine.open(directory: store, keyGuard: ToyGuard(device: 1), provisioning: prov))
    }
}
