/** Quiver's version (semver); tests/packaging.test.ts keeps it equal to package.json's. */
export const version: string = "0.1.0";
