// Package httpapi serves mandate's HTTP APIs: OAuth endpoints, the admin API
// and (later) AuthZEN.
package httpapi
