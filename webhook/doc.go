// Package webhook is Herald's receiver kit. It signs and verifies every
// signature scheme Herald sends (standard, sha256-base64, sha512-hex,
// github), encrypts and decrypts bodies (AES-256-GCM), and provides an
// http.Handler middleware that verifies, decrypts and hands your code the
// event or the batch. It imports the standard library only, so a receiver
// can vendor it without the rest of Herald.
//
// A receiver needs three things from its subscription: the signature scheme,
// the signing secret and, when set, the encryption key:
//
//	key, err := webhook.DecodeKey(os.Getenv("WEBHOOK_ENCRYPTION_KEY")) // optional
//	http.Handle("POST /webhooks", webhook.Handler(webhook.HandlerConfig{
//		Scheme:        webhook.SchemeStandard,
//		Secrets:       []string{os.Getenv("WEBHOOK_SECRET")},
//		EncryptionKey: key,
//	}, func(w http.ResponseWriter, r *http.Request, m *webhook.Message) {
//		// Delivery is at least once: dedupe by m.ID (or each envelope's id).
//		for _, ev := range m.Events { ... }
//		w.WriteHeader(http.StatusNoContent)
//	}))
//
// The order matters and Handler keeps it: the signature covers the body as
// sent, which is the ciphertext when the subscription encrypts, so Verify
// runs on the raw body first and Decrypt only after it passes.
//
// During a secret rotation Herald sends a signature per active secret; give
// Verify (or HandlerConfig.Secrets) both the old and the new secret and
// drop the old one when the grace period ends.
package webhook
