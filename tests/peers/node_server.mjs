// A WebSocket server written with Node's `ws`, for testing our client against a foreign peer.
// Prints `READY <port>`. Paths: /echo (echo, text as text and binary as binary), /protocol (sends the
// negotiated subprotocol, then echoes), /close (closes with 4321 "custom reason" after one message).
import { WebSocketServer } from 'ws';

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: true,
  maxPayload: 64 * 1024 * 1024,
  handleProtocols: (protocols) => (protocols.has('chat.v2') ? 'chat.v2' : false),
});

wss.on('listening', () => console.log(`READY ${wss.address().port}`));

wss.on('connection', (ws, request) => {
  if (request.url === '/protocol') ws.send(ws.protocol || 'none');
  if (request.url === '/extensions') ws.send(ws.extensions || 'none');
  ws.on('message', (data, isBinary) => {
    if (request.url === '/close') {
      ws.close(4321, 'custom reason');
      return;
    }
    ws.send(data, { binary: isBinary });
  });
});

process.on('SIGTERM', () => wss.close(() => process.exit(0)));
