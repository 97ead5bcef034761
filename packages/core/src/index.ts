export * from './errors.ts';
export * from './types.ts';
export * from './jws.ts';
export * from './jwt.ts';
