// An exchange with the endpoint failed (codes 45-47): try again later (TRANSIENT), refused (REJECTED), or a receipt that does not verify (BAD_RECEIPT).
package mx.ine.apoyo.sync;

/** An exchange with the endpoint failed (codes 45-47): try again later (TRANSIENT), refused (REJECTED), or a receipt that does not verify (BAD_RECEIPT). */
public final class EndpointException extends SyncException {
    private static final long serialVersionUID = 1L;

    EndpointException(ErrorCode code, String message) {
        super(code, message);
    }
}
