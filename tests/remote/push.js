// A json-server 0.17 middleware (`json-server --middlewares tests/remote/push.js`) that makes
// the demo remote push its changes, as a real accounting system with webhooks would: after each
// successful POST, PUT, PATCH or DELETE on the collection, it POSTs the changed record (for a
// DELETE a tombstone, {"id": …, "_deleted": true}) to pg_syncbridge's listener.
//
// Environment (the middleware does nothing without the first):
//   SYNCBRIDGE_PUSH_URL         e.g. http://127.0.0.1:8787/links/accounting/records
//   SYNCBRIDGE_PUSH_TOKEN       the link's webhook secret, sent as a bearer token
//   SYNCBRIDGE_PUSH_COLLECTION  the collection that pushes (default customers)
//
// json-server --quiet silences console.log, so the log lines go to stdout directly.
// Pushes go out one at a time, in the order of the changes, so an older version of a record
// never overtakes a newer one. Each carries its own X-Delivery-Id: without one the listener
// names a delivery by its body, and a record edited back to a state it had minutes ago would be
// taken for a repeated delivery. The extension's own writes to the remote are pushed back too;
// its loop guards see they change nothing and stop them.
'use strict';
const http = require('http');

const target = process.env.SYNCBRIDGE_PUSH_URL ? new URL(process.env.SYNCBRIDGE_PUSH_URL) : null;
const token = process.env.SYNCBRIDGE_PUSH_TOKEN || '';
const collection = process.env.SYNCBRIDGE_PUSH_COLLECTION || 'customers';
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
const pathRe = new RegExp('^/' + collection + '(?:/([^/?]+))?/?(?:\\?.*)?$');
let queue = Promise.resolve();
let sequence = 0;

function send(method, record) {
  const body = JSON.stringify(record);
  const id = `${process.pid}-${Date.now()}-${++sequence}`;
  const started = process.hrtime.bigint();
  return new Promise((resolve) => {
    const req = http.request(
      {
        agent,
        host: target.hostname,
        port: target.port,
        path: target.pathname,
        method: 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          'x-delivery-id': id,
        },
      },
      (res) => {
        let answer = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => (answer += chunk));
        res.on('end', () => {
          const ms = Number(process.hrtime.bigint() - started) / 1e6;
          const outcome = (answer.match(/"status":"([a-z]+)"/) || [])[1] || answer.slice(0, 120);
          process.stdout.write(`push: ${method} ${collection}/${record.id} -> ${res.statusCode} ${outcome} in ${ms.toFixed(1)} ms\n`);
          resolve();
        });
      }
    );
    req.on('error', (e) => {
      process.stdout.write(`push: ${method} ${collection}/${record.id} failed: ${e.message}\n`);
      resolve();
    });
    req.end(body);
  });
}

module.exports = (req, res, next) => {
  const m = target && ['POST', 'PUT', 'PATCH', 'DELETE'].includes(req.method) && pathRe.exec(req.path);
  if (!m) return next();
  const pathId = m[1] && (/^\d+$/.test(m[1]) ? Number(m[1]) : decodeURIComponent(m[1]));
  // json-server answers with the record it stored: keep what it sends.
  let sent;
  const originalSend = res.send;
  res.send = function (body) {
    if (sent === undefined) sent = body;
    return originalSend.apply(this, arguments);
  };
  res.on('finish', () => {
    if (res.statusCode < 200 || res.statusCode > 299) return;
    let record;
    if (req.method === 'DELETE') {
      if (pathId === undefined) return;
      record = { id: pathId, _deleted: true };
    } else {
      try {
        record = typeof sent === 'string' || Buffer.isBuffer(sent) ? JSON.parse(sent) : sent;
      } catch (e) {
        return;
      }
      if (!record || typeof record !== 'object' || Array.isArray(record) || record.id === undefined) return;
    }
    queue = queue.then(() => send(req.method, record));
  });
  next();
};
