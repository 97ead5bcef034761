export { startServer, createLogger, type ServeOptions, type RunningServer } from './server.ts';
export { readConfigFile, parseConfig, checkReferences, compileConfig, applyConfig, configWarnings, stableGuid } from './config/load.ts';
export { BatonConfig } from './config/schema.ts';
export { planConfig, applyConfigPlan, planSummary, type ConfigPlan, type PlanChange, type PlanAction } from './config/plan.ts';
export { openStore } from './store/index.ts';
export type { Store } from './store/types.ts';
export { loadKek, type Kek } from './crypto/kek.ts';
export { Keyring } from './keys/keyring.ts';
export { generateClientSecret } from './crypto/secrets.ts';
export { GrantRegistry, type Grant, type TokenRequest, type TokenResponse } from './grants/registry.ts';
export { BUILT_IN_GRANTS } from './grants/index.ts';
export { BUILT_IN_ROUTES } from './endpoints/index.ts';
export type { RoutePlugin } from './http/app.ts';
export type { ServerContext } from './context.ts';
export { auditLogOf, AuditLog, AUDIT_BUFFER_SIZE, type ExchangeAuditEvent, type AuditListener } from './audit.ts';
export { recordIssuerBase, recordedIssuerBase } from './issuer-record.ts';
/** The escaping HTML template of the sign-in pages, for other server-rendered pages (the demo's Tasks Web uses it). */
export { html, raw, escapeHtml, SafeHtml, type HtmlValue } from './pages/html.ts';
/** The admin API (docs/operations.md, "Admin API"): its change log and the built-in admin application. */
export { adminLogOf, AdminLog, type AdminChangeEvent, type AdminActor, type AdminEntity } from './admin/audit.ts';
export { ADMIN_CLIENT_ID, ADMIN_IDENTIFIER_URI, ADMIN_ROLE } from './admin/application.ts';
export { ServerMetrics, listenForMetrics, shareWithPrimary, clusterMetrics, type MetricsOptions, type MetricsListener, type MetricsText } from './observe/metrics.ts';
