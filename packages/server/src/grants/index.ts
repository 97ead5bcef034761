/** The grants the token service ships with, registered through the public `registerGrant`. */
import { registerGrant } from './registry.ts';
import { clientCredentialsGrant } from './client-credentials.ts';
import { authorizationCodeGrant } from './authorization-code.ts';
import { refreshTokenGrant } from './refresh-token.ts';
import { onBehalfOfGrant } from './on-behalf-of.ts';
import { tokenExchangeGrant } from './token-exchange.ts';

registerGrant(clientCredentialsGrant);
registerGrant(authorizationCodeGrant);
registerGrant(refreshTokenGrant);
registerGrant(onBehalfOfGrant);
registerGrant(tokenExchangeGrant);
