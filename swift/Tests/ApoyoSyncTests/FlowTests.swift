// The app's flow against a real reference endpoint process (`apoyo serve --dev`, started by
// scripts/test-swift.sh): register, activate with the dev-mailbox code, processes, captures and
// their refusals, network policies, a sync cancelled from Swift while it runs, then
// capture -> sync -> verified receipt, retry of a quarantined capture, reopen, and the
// Embedding example run against the same store; and a device provisioned with another INE
// root, which deletes nothing.

import Foundation
import XCTest
@testable import ApoyoSync

final class FlowTests: XCTestCase {
    func testCaptureSyncReceiptAgainstTheEndpoint() async throws {
        let ep = try Endpoint.fromEnvironment()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = dir.appendingPathComponent("store").path
        let keyGuard = ToyGuard(device: 7)

        let engine = try SyncEngine.create(directory: store, keyGuard: keyGuard, provisioning: ep.provisioning)
        let listener = CountingListener()
        try engine.setListener(listener)
        try registerAndActivate(engine, ep)
        let (accepted, refused) = try captures(engine, ep, listener)
        try policies(engine)
        try await cancelledRun(engine, listener)

        let report = try await engine.sync(budgetMilliseconds: 60_000)
        XCTAssertEqual(report.committed, 1)
        XCTAssertEqual(report.quarantined, 1)
        XCTAssertEqual(report.pending, 0)
        XCTAssertEqual(report.stopped, .drained)
        XCTAssertEqual(listener.count(.purged), 1)
        XCTAssertEqual(listener.count(.quarantined), 1)
        XCTAssertGreaterThanOrEqual(listener.progress, 2)
        XCTAssertTrue(listener.events.contains(.syncFinished))
        let receipts = try engine.receipts()
        XCTAssertEqual(receipts.map(\.captureId), [accepted])
        XCTAssertEqual(receipts.first?.result, "counted")
        XCTAssertEqual(receipts.first?.verified, true)
        let quarantined = try engine.captures().first { $0.id == refused }
        XCTAssertEqual(quarantined?.state, .quarantined)
        try engine.retry(captureId: refused)
        XCTAssertEqual(try engine.captures().first { $0.id == refused }?.state, .captured)
        XCTAssertEqual(listener.count(.captured), 3)
        try engine.close()

        // The README example, on the same store: a new supporter goes out and is counted.
        let capture = try ep.capture(process: "revocacion-2022", clave: "CCCXYZ90010101H003")
        let r = try await captureAndSend(store: store, keyGuard: keyGuard, provisioning: ep.provisioning, capture: capture)
        XCTAssertEqual(r.committed, 1, "\(r)")
        XCTAssertEqual(r.stopped, .drained)
        let again = try SyncEngine.open(directory: store, keyGuard: keyGuard, provisioning: ep.provisioning)
        XCTAssertEqual(try again.receipts().filter { $0.verified && $0.result == "counted" }.count, 2)
        try again.close()
    }

    /// A device provisioned with ANOTHER key folder's INE root: the endpoint counts the capture,
    /// but its receipt does not chain to the root the device holds, so nothing is deleted: the
    /// capture is quarantined (receipt_invalid) with every byte and no receipt is kept. A store
    /// made with one root refuses to open with another.
    func testAnotherIneRootDeletesNothing() async throws {
        let ep = try Endpoint.fromEnvironment()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = dir.appendingPathComponent("store").path
        let keyGuard = ToyGuard(device: 9)
        var other = ep.provisioning
        other.ineRoot = ep.otherIneRoot

        let engine = try SyncEngine.create(directory: store, keyGuard: keyGuard, provisioning: other)
        try registerAndActivate(engine, ep, email: "swift-other-root@example.org")
        let id = try engine.capture(ep.capture(process: "revocacion-2022", clave: "DDDXYZ90010101H004"))
        let report = try await engine.sync(budgetMilliseconds: 60_000)
        XCTAssertEqual(report.committed, 0, "\(report)")
        XCTAssertEqual(report.quarantined, 1)
        XCTAssertEqual(report.pending, 0)
        let st = try engine.status()
        XCTAssertEqual(st.purged, 0)
        XCTAssertEqual(st.quarantined, 1)
        XCTAssertGreaterThan(st.pendingBytes, 0, "every byte kept")
        let kept = try engine.captures().first { $0.id == id }
        XCTAssertEqual(kept?.state, .quarantined)
        XCTAssertEqual(kept?.reason, "receipt_invalid")
        XCTAssertEqual(try engine.receipts(), [])
        try engine.retry(captureId: id)
        XCTAssertEqual(try engine.status().captured, 1)
        try engine.close()
        assertThrows(.keyUnavailable, try SyncEngine.open(directory: store, keyGuard: keyGuard, provisioning: ep.provisioning))
    }

    private func registerAndActivate(_ engine: SyncEngine, _ ep: Endpoint, email: String = "swift@example.org") throws {
        let front = try ep.image("front.jpg")
        assertThrows(.invalid, try engine.register(url: ep.url, email: "not an address", provider: .google, front: front))
        let expires = try engine.register(url: ep.url, email: email, provider: .google, front: front)
        XCTAssertGreaterThan(expires.timeIntervalSinceNow, 0)
        let code = try blockingMailboxCode(ep, email)
        assertThrows(.activation, try engine.activate(code: "ZZZZZZZZZZ"))
        XCTAssertGreaterThan(try engine.activate(code: code).timeIntervalSinceNow, 0)
    }

    private func blockingMailboxCode(_ ep: Endpoint, _ email: String) throws -> String {
        let done = DispatchSemaphore(value: 0)
        var result: Result<String, Error> = .failure(ApoyoError(code: .io, rawCode: 91, message: "no answer"))
        Task {
            result = await Result(catching: { try await ep.mailboxCode(email) })
            done.signal()
        }
        done.wait()
        return try result.get()
    }

    private func captures(_ engine: SyncEngine, _ ep: Endpoint, _ l: CountingListener) throws -> (String, String) {
        XCTAssertEqual(try engine.addProcesses(json: """
            [{"id":"solo-local","name":"Only on this device","accepted_models":["G"],\
            "vigencia_cutoff":"2022-01-01","scope":"national"}]
            """), 1)
        let ids = try engine.processes().map(\.id)
        XCTAssertTrue(ids.contains("revocacion-2022") && ids.contains("solo-local"), "\(ids)")

        let bad = assertThrows(.invalid, try engine.capture(ep.capture(process: "revocacion-2022", clave: "NOT-A-CLAVE")))
        XCTAssertFalse(bad?.message.contains("NOT-A-CLAVE") ?? true, "no value in the message")
        assertThrows(.unknownProcess, try engine.capture(ep.capture(process: "no-such-process", clave: "AAAXYZ90010101H001")))
        var wrongModel = try ep.capture(process: "revocacion-2022", clave: "AAAXYZ90010101H001")
        wrongModel.model = "Z"
        assertThrows(.modelNotAccepted, try engine.capture(wrongModel))
        let accepted = try engine.capture(ep.capture(process: "revocacion-2022", clave: "AAAXYZ90010101H001"))
        assertThrows(.duplicate, try engine.capture(ep.capture(process: "revocacion-2022", clave: "AAAXYZ90010101H001")))
        let refused = try engine.capture(ep.capture(process: "solo-local", clave: "BBBXYZ90010101H002"))
        XCTAssertEqual(l.count(.captured), 2)

        let st = try engine.status()
        XCTAssertEqual(st.captured, 2)
        XCTAssertTrue(st.registered && !st.syncing)
        XCTAssertNotNil(st.activatedUntil)
        let listed = try engine.captures()
        XCTAssertEqual(Set(listed.map(\.id)), [accepted, refused])
        return (accepted, refused)
    }

    private func policies(_ engine: SyncEngine) throws {
        try engine.setNetwork(.none)
        var r = try engine.syncBlocking()
        XCTAssertEqual(r.stopped, .noNetwork)
        XCTAssertEqual(r.pending, 2)
        try engine.setNetworkPolicy(NetworkPolicy(wifiOnly: true))
        try engine.setNetwork(.cellular)
        r = try engine.syncBlocking()
        XCTAssertEqual(r.stopped, .wifiOnly)
        try engine.setNetworkPolicy(NetworkPolicy(wifiOnly: false, cellularAllowanceBytes: 1000))
        r = try engine.syncBlocking()
        XCTAssertEqual(r.stopped, .cellularCapReached)
        XCTAssertLessThanOrEqual(try engine.status().meteredBytes, 1000)
        try engine.setNetworkPolicy(NetworkPolicy())
        try engine.setNetwork(.wifi)
        XCTAssertEqual(try engine.status().network, .wifi)
    }

    /// A sync held at its start: status says syncing, a second sync is refused, and cancelling
    /// the Swift task stops the run.
    private func cancelledRun(_ engine: SyncEngine, _ l: CountingListener) async throws {
        l.hold()
        let task = Task { try await engine.sync(budgetMilliseconds: 60_000) }
        await Task.detached { l.waitUntilStarted() }.value
        XCTAssertTrue(try engine.status().syncing)
        assertThrows(.syncRunning, try engine.syncBlocking())
        task.cancel()
        l.release()
        let report = try await task.value
        XCTAssertEqual(report.stopped, .cancelled)
        XCTAssertEqual(report.committed, 0)
    }
}

extension Result where Failure == Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
