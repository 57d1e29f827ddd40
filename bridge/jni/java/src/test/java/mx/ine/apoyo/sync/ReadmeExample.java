// The Java example of docs/embedding.md ("## Android"), compiled and run by the tests
// (FlowTest.theReadmeExampleRuns); scripts/test-java.sh fails when the text between the
// README markers differs from the code block in docs/embedding.md.
package mx.ine.apoyo.sync;

import java.io.File;
import java.time.Duration;

final class ReadmeExample {
    private ReadmeExample() {}

    // README:begin
    /** Captures one support and sends it; returns its verified receipt (null: still queued). */
    static Receipt captureAndSend(File dir, KeyGuard guard, byte[] inePublicKey, String ineRoot,
            String clave, byte[][] images) throws SyncException {
        // ineRoot: the line INE provisions, "apoyo-ine-root-v1 <64 hex>" (required)
        Provisioning provisioning = new Provisioning(inePublicKey, ineRoot);
        try (SyncEngine engine = SyncEngine.open(dir, guard, provisioning, new EngineOptions())) {
            engine.setNetwork(NetworkType.WIFI); // from the app's connectivity callback
            engine.setNetworkPolicy(new NetworkPolicy(false, 50_000_000)); // cellular cap
            String id = engine.capture(Capture.builder("revocacion-2022", "G")
                    .claveElector(clave)
                    .location(19.43, -99.13, 8.0)
                    .images(images[0], images[1], images[2], images[3])
                    .build()); // encrypted and durable once capture returns
            SyncReport report = engine.sync(Duration.ofMinutes(5));
            for (Receipt receipt : engine.receipts()) {
                if (receipt.captureId.equals(id) && receipt.verified) {
                    return receipt;
                }
            }
            return null; // report.stopped says why it is still queued
        } catch (InvalidInputException e) {
            throw e; // e.code() names what the user must fix (e.g. INVALID, DUPLICATE)
        }
    }
    // README:end
}
