/**
 * The grants the token service ships with, in the order discovery lists them. `startServer` builds
 * each server's {@link GrantRegistry} from these plus the grants its options add.
 */
import type { Grant } from './registry.ts';
import { clientCredentialsGrant } from './client-credentials.ts';
import { authorizationCodeGrant } from './authorization-code.ts';
import { refreshTokenGrant } from './refresh-token.ts';
import { onBehalfOfGrant } from './on-behalf-of.ts';
import { tokenExchangeGrant } from './token-exchange.ts';

export const BUILT_IN_GRANTS: readonly Grant[] = Object.freeze([clientCredentialsGrant, authorizationCodeGrant, refreshTokenGrant, onBehalfOfGrant, tokenExchangeGrant]);
