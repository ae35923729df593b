-- The team stack's two databases, as `tagops team up` names them: MLflow's backend store, and the
-- prediction log with feedback and API keys. The postgres image runs this once, when its volume is new;
-- each service creates its own tables (MLflow's and the log's migrations) when it starts.
CREATE DATABASE tagops_mlflow;
CREATE DATABASE tagops_log;
