/**
 * `freePort`: a loopback TCP port nothing listens on right now (the OS picks it), for a process a
 * test or a tool starts with `--port N`. The one helper the tests, the fault runs
 * (reliability/) and the bench share.
 */
import { createServer, type AddressInfo } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
