// Appended by e2e/receiving_test.go after a Node.js snippet of
// docs/receiving.md. Reads a JSON array of cases on stdin, calls the
// snippet's verify or decrypt on each, and prints a JSON array of
// {"result": ...} or {"error": "..."}.
{
  const cases = JSON.parse(require('node:fs').readFileSync(0, 'utf8'));
  const out = cases.map((c) => {
    try {
      const body = Buffer.from(c.body_b64, 'base64');
      const args = c.args || [];
      if (c.fn === 'verify') return { result: verify(c.headers, body, c.secret, ...args) };
      if (c.fn === 'decrypt') return { result: decrypt(c.headers, body, c.key_b64, ...args) };
      return { error: `unknown fn ${c.fn}` };
    } catch (e) {
      return { error: String((e && e.message) || e) };
    }
  });
  process.stdout.write(JSON.stringify(out));
}
