package main

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// awsSecrets reads secrets from AWS Secrets Manager with the function's role (the
// default credential chain). The client is made on first use.
type awsSecrets struct {
	once   sync.Once
	client *secretsmanager.Client
	err    error
}

func (a *awsSecrets) GetSecret(ctx context.Context, id string) (string, error) {
	a.once.Do(func() {
		cfg, err := config.LoadDefaultConfig(ctx)
		if err != nil {
			a.err = fmt.Errorf("loading the AWS configuration: %w", err)
			return
		}
		a.client = secretsmanager.NewFromConfig(cfg)
	})
	if a.err != nil {
		return "", a.err
	}
	out, err := a.client.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(id)})
	if err != nil {
		return "", fmt.Errorf("reading secret %s: %w", id, err)
	}
	switch {
	case out.SecretString != nil:
		return *out.SecretString, nil
	case out.SecretBinary != nil:
		return string(out.SecretBinary), nil
	}
	return "", errors.New("secret " + id + " has no value")
}
