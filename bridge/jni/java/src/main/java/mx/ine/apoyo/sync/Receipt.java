// The endpoint's signed receipt for one committed capture, as the engine re-verified it.
package mx.ine.apoyo.sync;

import java.util.ArrayList;
import java.util.List;

/** A receipt from {@link SyncEngine#receipts}: the endpoint's signed word that it has a capture. */
public final class Receipt {
    /** What the receipt certifies. */
    public enum Result {
        /** The support was counted. */
        COUNTED,
        /** The citizen was already counted for the process; see {@link #firstCaptureId}. */
        DUPLICATE
    }

    public final String captureId;
    public final Result result;
    /** When the endpoint counted it (RFC 3339). */
    public final String countedAt;
    /** For a duplicate: the capture that was counted; otherwise null. */
    public final String firstCaptureId;
    /** Whether the endpoint's signature verified. */
    public final boolean verified;

    private Receipt(String[] f, int at) {
        captureId = f[at];
        result = "duplicate".equals(f[at + 1]) ? Result.DUPLICATE : Result.COUNTED;
        countedAt = f[at + 2];
        firstCaptureId = f[at + 3];
        verified = "true".equals(f[at + 4]);
    }

    static List<Receipt> list(String[] flat) {
        List<Receipt> out = new ArrayList<>();
        for (int i = 0; i + 5 <= flat.length; i += 5) {
            out.add(new Receipt(flat, i));
        }
        return out;
    }
}
