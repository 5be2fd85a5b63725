package sqlite

// SQLite result codes (https://sqlite.org/rescode.html) that classify reads;
// the same numbers whichever driver is built in.
const (
	codeBusy                 = 5
	codeLocked               = 6
	codeReadOnly             = 8
	codeIOErr                = 10
	codeCorrupt              = 11
	codeFull                 = 13
	codeCantOpen             = 14
	codeNotADB               = 26
	codeConstraintPrimaryKey = 1555
	codeConstraintUnique     = 2067
)
