// The service's version, as package.json states it (a test holds the two
// equal): for the spans' service.version. A constant rather than a read of
// package.json, which sits one level up in the source tree and two in the
// production build.

export const serviceVersion = "0.1.0";
