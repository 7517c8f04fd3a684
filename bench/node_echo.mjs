// Node's `ws` echo server for the benchmarks (prints READY <port>). NODE_PATH points at tests/peers.
import { createRequire } from 'module';
const require = createRequire(import.meta.url);
const { WebSocketServer } = require('ws');

const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('listening', () => console.log(`READY ${wss.address().port}`));
wss.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
