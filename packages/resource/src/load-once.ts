/**
 * A value fetched once, when first needed (an issuer's discovery document, a token endpoint):
 * concurrent callers share one fetch, and a failed fetch is forgotten so the next caller tries
 * again instead of inheriting the failure.
 */
export class LoadOnce<T> {
  readonly #load: () => Promise<T>;
  #value: T | undefined;
  #loading: Promise<T> | undefined;

  /** `value`: already known (configured rather than discovered); `load` is then never called. */
  constructor(load: () => Promise<T>, value?: T) {
    this.#load = load;
    this.#value = value;
  }

  /** The value, once loaded; lets a hot path skip the promise. */
  get value(): T | undefined {
    return this.#value;
  }

  get(): Promise<T> {
    if (this.#value !== undefined) return Promise.resolve(this.#value);
    this.#loading ??= this.#load().then(
      (value) => {
        this.#value = value;
        this.#loading = undefined;
        return value;
      },
      (error: unknown) => {
        this.#loading = undefined;
        throw error;
      },
    );
    return this.#loading;
  }
}
