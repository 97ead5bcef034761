export * from './errors.ts';
export * from './types.ts';
export * from './jws.ts';
export * from './jwt.ts';
export * from './directory.ts';
export * from './scopes.ts';
export * from './claims.ts';
export * from './client-credentials.ts';
