/** The grants the token service ships with, registered through the public `registerGrant`. */
import { registerGrant } from './registry.ts';
import { clientCredentialsGrant } from './client-credentials.ts';

registerGrant(clientCredentialsGrant);
