// Command bootstrap is ibex's AWS Lambda function (runtime provided.al2023): each
// invocation runs one sync once, the one its event names ({"sync":"foobar"} from an
// EventBridge Scheduler schedule) or IBEX_SYNC. See docs/deploy.md and terraform/.
//
// Build it with:
//
//	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -tags lambda.norpc -trimpath -ldflags='-s -w' -o dist/bootstrap ./lambda
//
// Environment: IBEX_DSN or IBEX_DSN_SECRET_ARN (the control database), IBEX_SECRET_ENV
// ({"VAR":"secret ARN"}: set as environment variables before connecting, for dbs with
// pass=env:VAR), IBEX_SYNC, IBEX_DEADLINE_MARGIN (default 10s), IBEX_LOG_LEVEL,
// IBEX_LOG_FORMAT.
package main

import "github.com/aws/aws-lambda-go/lambda"

func main() {
	lambda.Start(newHandler().Handle)
}
