#!/usr/bin/env node
// A real SMTP server for otpd's integration tests (npm: smtp-server, mailparser).
//
//   node tests/peers/smtp_peer.js --out FILE [--port N] [--reject-rcpt]
//                                 [--key KEY.pem --cert CERT.pem [--secure]]
//
// Listens on 127.0.0.1:N (0 = any free port) and prints the port as its first
// stdout line. Each accepted message is appended to FILE as one JSON line
// {"from","to":[...],"subject","text","html","raw_headers":{...},"auth_user"}.
// Any AUTH is accepted. --reject-rcpt answers every RCPT TO with 550.
// With --key/--cert, STARTTLS is offered with that certificate; with --secure
// the listener speaks TLS from the start (smtps). Without them STARTTLS is off.
'use strict';

const fs = require('fs');
const { SMTPServer } = require('smtp-server');
const { simpleParser } = require('mailparser');

function parseArgs(argv) {
  const args = { port: 0, out: null, rejectRcpt: false, key: null, cert: null, secure: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') args.port = Number(argv[++i]);
    else if (a === '--out') args.out = argv[++i];
    else if (a === '--reject-rcpt') args.rejectRcpt = true;
    else if (a === '--key') args.key = argv[++i];
    else if (a === '--cert') args.cert = argv[++i];
    else if (a === '--secure') args.secure = true;
    else {
      console.error(`smtp_peer: unknown argument ${a}`);
      process.exit(2);
    }
  }
  if (!args.out) {
    console.error('smtp_peer: --out FILE is required');
    process.exit(2);
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const tls = args.key && args.cert;

const options = {
  secure: Boolean(tls && args.secure),
  authOptional: true,
  allowInsecureAuth: true,
  disabledCommands: tls ? [] : ['STARTTLS'],
  logger: false,
  onAuth(auth, session, callback) {
    callback(null, { user: auth.username || 'anonymous' });
  },
  onRcptTo(address, session, callback) {
    if (args.rejectRcpt) {
      const err = new Error('mailbox unavailable');
      err.responseCode = 550;
      return callback(err);
    }
    callback();
  },
  onData(stream, session, callback) {
    const chunks = [];
    stream.on('data', (c) => chunks.push(c));
    stream.on('end', async () => {
      try {
        const raw = Buffer.concat(chunks);
        const parsed = await simpleParser(raw);
        const rawHeaders = {};
        for (const line of parsed.headerLines) rawHeaders[line.key] = line.line;
        const record = {
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : null,
          to: session.envelope.rcptTo.map((r) => r.address),
          subject: parsed.subject || '',
          text: parsed.text || '',
          html: parsed.html || '',
          raw_headers: rawHeaders,
          auth_user: session.user || null,
          secure: Boolean(session.secure),
        };
        fs.appendFileSync(args.out, JSON.stringify(record) + '\n');
        callback();
      } catch (e) {
        callback(e);
      }
    });
  },
};
if (tls) {
  options.key = fs.readFileSync(args.key);
  options.cert = fs.readFileSync(args.cert);
}

const server = new SMTPServer(options);
server.on('error', (e) => console.error(`smtp_peer: ${e.message}`));
server.listen(args.port, '127.0.0.1', () => {
  process.stdout.write(`${server.server.address().port}\n`);
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
