#!/usr/bin/env node
// A real SMSC for otpd's integration tests (npm: smpp), SMPP 3.4 over TCP.
//
//   node tests/peers/smpp_peer.js [--port N] [--control-port N] [--out FILE]
//                                 [--system-id ID --password PW] [--key K.pem --cert C.pem]
//                                 [--mode JSON]
//
// Listens on 127.0.0.1:N (0 = any free port) and prints two lines on stdout:
// the SMPP port, then the control port. Accepts bind_transceiver (checking
// system_id/password when given), answers enquire_link, answers every
// submit_sm and, DELIVRD by default, sends a deliver_sm receipt for it.
// Each submit_sm is recorded (and appended to FILE as one JSON line):
//   {"n","at","system_id","session","to","from","source_ton","dest_ton",
//    "data_coding","registered_delivery","via":"short_message"|"message_payload",
//    "text","hex","answer":"ok"|"throttled"|"rejected"|"dropped","message_id"}
// where text is decoded by data_coding (0: GSM 03.38 unpacked septets, with the
// smpp package's own GSM decoder; 8: UCS-2/UTF-16BE; anything else: latin1).
//
// Control (HTTP on 127.0.0.1, JSON):
//   GET  /state    {"binds":[{"system_id","at","session"}],"unbinds":[{"session","at"}],
//                   "sessions","submits":[...records],"receipts_sent","receipt_resps",
//                   "mode":{...}}   (unbinds: the ESME's unbind requests)
//   POST /mode     merges into the mode below and answers it
// Mode (also --mode JSON at start):
//   reject: N          answer the next N submits with reject_status (-1: all)
//   reject_status: S   default 0x45 (ESME_RSUBMITFAIL)
//   throttle: N        answer the next N submits with ESME_RTHROTTLED
//   drop_after: N      leave the next N submits unanswered, then drop that connection
//   delay_ms: N        wait before each submit_sm_resp
//   receipt: STAT      the receipt's stat: DELIVRD (default), UNDELIV, REJECTD, EXPIRED, or
//                      "none" for no receipt
//   receipt_delay_ms: N  wait before the receipt (default 100)
//   receipt_tlvs: bool   also send receipted_message_id and message_state TLVs
//   down: bool         close every session and refuse binds (ESME_RBINDFAIL) while true
//   record: "full"|"light"  full (default) records every submit as above; light (for
//                      bench/smpp_load.sh) keeps only {"to","t","answer","message_id"}
//                      per submit (t = arrival, ms since the epoch with a fraction),
//                      decodes no text and writes no FILE, so the peer spends its CPU
//                      on SMPP alone
// Benchmark endpoints (any mode):
//   GET  /stats     {"submits","ok","first_t","last_t","receipts_sent","receipt_resps",
//                    "sessions","cpu_s"}  counts only (cheap to poll); cpu_s = this
//                    process's user+system CPU seconds
//   GET  /arrivals  [[to, t], ...] per submit answered ok, in arrival order
'use strict';

const fs = require('fs');
const http = require('http');
const smpp = require('smpp');
const defs = require('smpp/lib/defs');

// Keep short_message and message_payload as raw octets: decoding is ours, by data_coding.
defs.filters.message.decode = function (value) {
  return value;
};

function parseArgs(argv) {
  const args = { port: 0, controlPort: 0, out: null, systemId: null, password: null,
                 key: null, cert: null, mode: {} };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--port') args.port = Number(argv[++i]);
    else if (a === '--control-port') args.controlPort = Number(argv[++i]);
    else if (a === '--out') args.out = argv[++i];
    else if (a === '--system-id') args.systemId = argv[++i];
    else if (a === '--password') args.password = argv[++i];
    else if (a === '--key') args.key = argv[++i];
    else if (a === '--cert') args.cert = argv[++i];
    else if (a === '--mode') args.mode = JSON.parse(argv[++i]);
    else {
      console.error(`smpp_peer: unknown argument ${a}`);
      process.exit(2);
    }
  }
  return args;
}

const args = parseArgs(process.argv.slice(2));
const mode = Object.assign({
  reject: 0, reject_status: smpp.ESME_RSUBMITFAIL, throttle: 0, drop_after: 0, delay_ms: 0,
  receipt: 'DELIVRD', receipt_delay_ms: 100, receipt_tlvs: false, down: false,
}, args.mode);

const binds = [];
const unbinds = [];
const submits = [];
const sessions = new Set();
let receiptsSent = 0;
let receiptResps = 0;
let okSubmits = 0;
const arrivals = [];  // [to, t] per submit answered ok (t: ms since the epoch)
const { performance } = require('perf_hooks');
const nowMs = () => performance.timeOrigin + performance.now();
let nextId = 0;
let sessionCounter = 0;
const dropping = new Map();  // session -> submits left before the drop

function decodeText(raw, dataCoding) {
  if (!raw) return '';
  if (dataCoding === 0) return defs.gsmCoder.decode(raw, 0x00);
  if (dataCoding === 8) return Buffer.from(raw).swap16().toString('utf16le');
  return raw.toString('latin1');
}

function smppTime(d) {
  const p = (n) => String(n).padStart(2, '0');
  return p(d.getUTCFullYear() % 100) + p(d.getUTCMonth() + 1) + p(d.getUTCDate()) +
    p(d.getUTCHours()) + p(d.getUTCMinutes());
}

const STATES = { ENROUTE: 1, DELIVRD: 2, EXPIRED: 3, DELETED: 4, UNDELIV: 5, ACCEPTD: 6,
                 UNKNOWN: 7, REJECTD: 8 };

function sendReceipt(session, record, submittedAt) {
  const stat = mode.receipt;
  if (!stat || stat === 'none') return;
  setTimeout(() => {
    if (!sessions.has(session)) return;  // the ESME is gone: real SMSCs queue, we drop
    const delivered = stat === 'DELIVRD' ? '001' : '000';
    const text = `id:${record.message_id} sub:001 dlvrd:${delivered} ` +
      `submit date:${smppTime(submittedAt)} done date:${smppTime(new Date())} ` +
      `stat:${stat} err:${stat === 'DELIVRD' ? '000' : '001'} text:`;
    const options = {
      source_addr_ton: 1, source_addr_npi: 1, source_addr: record.to,
      dest_addr_ton: 5, dest_addr: record.from, esm_class: smpp.ESM_CLASS.MC_DELIVERY_RECEIPT,
      data_coding: 0, short_message: Buffer.from(text, 'ascii'),
    };
    if (mode.receipt_tlvs) {
      options.receipted_message_id = record.message_id;
      options.message_state = STATES[stat] || 7;
    }
    session.deliver_sm(options, () => { receiptResps++; });
    receiptsSent++;
  }, mode.receipt_delay_ms);
}

function record(entry) {
  submits.push(entry);
  if (args.out) fs.appendFileSync(args.out, JSON.stringify(entry) + '\n');
}

function onSubmitLight(session, pdu) {
  const t = nowMs();
  const entry = { to: pdu.destination_addr, from: pdu.source_addr, t, answer: 'ok',
                  message_id: null };
  let status = smpp.ESME_ROK;
  if (mode.throttle > 0) {
    mode.throttle--;
    status = smpp.ESME_RTHROTTLED;
    entry.answer = 'throttled';
  } else if (mode.reject !== 0) {
    if (mode.reject > 0) mode.reject--;
    status = mode.reject_status;
    entry.answer = 'rejected';
  } else {
    entry.message_id = (++nextId).toString(16).padStart(8, '0');
    okSubmits++;
    arrivals.push([entry.to, t]);
  }
  submits.push(entry);
  const answer = () => {
    if (!sessions.has(session)) return;
    if (status === smpp.ESME_ROK) {
      session.send(pdu.response({ message_id: entry.message_id }));
      sendReceipt(session, entry, new Date());
    } else {
      session.send(pdu.response({ command_status: status }));
    }
  };
  if (mode.delay_ms > 0) setTimeout(answer, mode.delay_ms);
  else answer();
}

function onSubmit(session, pdu) {
  if (mode.record === 'light' && !(dropping.has(session) || mode.drop_after > 0)) {
    onSubmitLight(session, pdu);
    return;
  }
  const payload = pdu.message_payload;
  const raw = pdu.short_message && pdu.short_message.length ? pdu.short_message : payload;
  const entry = {
    n: submits.length, at: new Date().toISOString(), system_id: session.systemId,
    session: session.id, to: pdu.destination_addr, from: pdu.source_addr,
    source_ton: pdu.source_addr_ton, dest_ton: pdu.dest_addr_ton, data_coding: pdu.data_coding,
    registered_delivery: pdu.registered_delivery,
    via: pdu.short_message && pdu.short_message.length ? 'short_message' : 'message_payload',
    text: decodeText(raw, pdu.data_coding), hex: raw ? Buffer.from(raw).toString('hex') : '',
    answer: 'ok', message_id: null,
  };
  if (dropping.has(session) || mode.drop_after > 0) {
    if (!dropping.has(session)) {
      dropping.set(session, mode.drop_after);
      mode.drop_after = 0;
    }
    const left = dropping.get(session) - 1;
    entry.answer = 'dropped';
    record(entry);
    if (left <= 0) {
      dropping.delete(session);
      session.destroy();
    } else {
      dropping.set(session, left);
    }
    return;
  }
  let status = smpp.ESME_ROK;
  if (mode.throttle > 0) {
    mode.throttle--;
    status = smpp.ESME_RTHROTTLED;
    entry.answer = 'throttled';
  } else if (mode.reject !== 0) {
    if (mode.reject > 0) mode.reject--;
    status = mode.reject_status;
    entry.answer = 'rejected';
  } else {
    entry.message_id = (++nextId).toString(16).padStart(8, '0');
    okSubmits++;
    arrivals.push([entry.to, nowMs()]);
  }
  record(entry);
  const answer = () => {
    if (!sessions.has(session)) return;
    if (status === smpp.ESME_ROK) {
      session.send(pdu.response({ message_id: entry.message_id }));
      sendReceipt(session, entry, new Date());
    } else {
      session.send(pdu.response({ command_status: status }));
    }
  };
  if (mode.delay_ms > 0) setTimeout(answer, mode.delay_ms);
  else answer();
}

function onSession(session) {
  session.id = ++sessionCounter;
  session.on('error', () => {});
  if (mode.down) {
    session.destroy();
    return;
  }
  sessions.add(session);
  session.on('close', () => sessions.delete(session));
  session.on('bind_transceiver', (pdu) => {
    const ok = !mode.down &&
      (args.systemId === null || pdu.system_id === args.systemId) &&
      (args.password === null || pdu.password === args.password);
    if (!ok) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    session.systemId = pdu.system_id;
    binds.push({ system_id: pdu.system_id, at: new Date().toISOString(), session: session.id });
    session.send(pdu.response({ system_id: 'SMSCPEER' }));
  });
  session.on('submit_sm', (pdu) => onSubmit(session, pdu));
  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    unbinds.push({ session: session.id, at: new Date().toISOString() });
    session.send(pdu.response());
    session.close();
  });
}

const tlsOptions = args.key && args.cert
  ? { key: fs.readFileSync(args.key), cert: fs.readFileSync(args.cert) } : {};
const server = smpp.createServer(tlsOptions, onSession);
server.on('error', (e) => console.error(`smpp_peer: ${e.message}`));

const control = http.createServer((req, res) => {
  const reply = (code, body) => {
    res.writeHead(code, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  if (req.method === 'GET' && req.url === '/state') {
    return reply(200, { binds, unbinds, sessions: sessions.size, submits,
                        receipts_sent: receiptsSent,
                        receipt_resps: receiptResps, mode });
  }
  if (req.method === 'GET' && req.url === '/stats') {
    const cpu = process.cpuUsage();
    return reply(200, {
      submits: submits.length, ok: okSubmits,
      first_t: arrivals.length ? arrivals[0][1] : null,
      last_t: arrivals.length ? arrivals[arrivals.length - 1][1] : null,
      receipts_sent: receiptsSent, receipt_resps: receiptResps, sessions: sessions.size,
      cpu_s: (cpu.user + cpu.system) / 1e6,
    });
  }
  if (req.method === 'GET' && req.url === '/arrivals') return reply(200, arrivals);
  if (req.method === 'POST' && req.url === '/mode') {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      try {
        Object.assign(mode, JSON.parse(body || '{}'));
      } catch (e) {
        return reply(400, { error: e.message });
      }
      if (mode.down) {
        for (const s of sessions) s.destroy();
      }
      reply(200, mode);
    });
    return undefined;
  }
  return reply(404, { error: 'not found' });
});

server.listen(args.port, '127.0.0.1', () => {
  control.listen(args.controlPort, '127.0.0.1', () => {
    process.stdout.write(`${server.address().port}\n${control.address().port}\n`);
  });
});
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => process.exit(0));
}
