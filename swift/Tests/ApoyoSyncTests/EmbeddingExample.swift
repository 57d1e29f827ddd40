// The Swift example of docs/embedding.md ("## iOS (Swift)"), compiled and run by FlowTests.
// scripts/check-swift-example.sh fails when the snippet between the markers and the one in
// the doc differ.

import ApoyoSync

// embedding-example:start
/// Opens the store, records one supporter, and sends what is due on Wi-Fi.
func captureAndSend(store: String, keyGuard: KeyGuard, provisioning: Provisioning,
                    capture: Capture) async throws -> SyncReport {
    // On iOS: keyGuard = try SecureEnclaveKeyGuard(tag: "mx.ine.apoyo.master")
    // provisioning = Provisioning(endpointPublicKey: sealKey,
    //                             ineRoot: "apoyo-ine-root-v1 <64 hex>")  // both from INE
    let engine = try SyncEngine.open(directory: store, keyGuard: keyGuard,
                                     provisioning: provisioning)
    defer { try? engine.close() }  // deinit would close it too
    do {
        let id = try engine.capture(capture)  // durable when it returns
        print("stored", id)
    } catch let error as ApoyoError where error.code == .duplicate {
        print("this citizen is already on this phone")
    }
    try engine.setNetworkPolicy(NetworkPolicy(wifiOnly: true))
    try engine.setNetwork(.wifi)  // from NWPathMonitor
    let report = try await engine.sync(budgetMilliseconds: 60_000)  // cancel: cancel the Task
    for receipt in try engine.receipts() where receipt.verified {
        print("counted", receipt.captureId, receipt.result)
    }
    return report
}
// embedding-example:end
