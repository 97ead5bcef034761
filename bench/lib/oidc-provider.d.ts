// The part of oidc-provider's API the peer server uses (the package ships no types; @types/oidc-provider
// is not installed and the bench adds no dependencies).
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  class Provider {
    constructor(issuer: string, configuration?: Record<string, unknown>);
    proxy: boolean;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    on(event: string, listener: (...args: any[]) => void): this;
  }
  export default Provider;
}
