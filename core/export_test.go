package core

import "context"

// WriterPass runs one pass of the background writer as of the Store's
// clock: the rows due before the writer's next tick are written. Tests on a
// virtual clock call it where the writer's own ticker would have run.
func (s *Store) WriterPass() {
	if s.writer != nil {
		_ = s.writer.flush(context.Background(), false)
	}
}
