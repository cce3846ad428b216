package acc

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"time"

	"switchboard/store"
)

// fileSettings are the file sink's keys.
type fileSettings struct {
	path    string
	format  string // csv, json
	maxSize int64  // bytes: past it the file is rotated
	keep    int    // rotated files kept: path.1 (newest) ... path.<keep>
}

// fileRetryWaits are the pauses after consecutive failed attempts to
// write to the file (the last one repeats): the records are kept
// meanwhile, and each batch that comes waits for the pause as well.
var fileRetryWaits = []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 2 * time.Second, 5 * time.Second}

// fileSink appends records to a file and rotates it by size. Used by the
// writer goroutine only.
//
// Records the file does not take (a full disk, the file size limit, a
// directory removed, EIO) stay in pending, in order, and are written at
// the next attempt, after a pause (fileRetryWaits): a failure loses
// nothing until pending passes its bound (the writer's keepForFile). A
// record counts as written once its whole line is in the file; a write
// cut short inside a line is cut back to the last whole line, so that no
// record is in the file twice or half, and the next line starts a line
// of its own.
type fileSink struct {
	cfg     fileSettings
	log     *slog.Logger
	f       *os.File
	info    os.FileInfo // f's: the path may come to name another file, or none
	size    int64
	buf     []byte // the lines of one write
	ends    []int  // where each line ends in buf
	pending []store.CDR

	failures int       // consecutive failed attempts
	retryAt  time.Time // the next attempt after a failure
}

// write writes the pending records to the file cfg names, opening it
// (again, when the settings changed or the path names another file),
// rotating it when the next line would pass maxSize. It returns how many
// records it wrote, which leave pending; on an error the rest stay.
func (s *fileSink) write(cfg *fileSettings) (int, error) {
	if err := s.ready(cfg); err != nil {
		return 0, err
	}
	done := 0
	defer func() {
		n := copy(s.pending, s.pending[done:])
		clear(s.pending[n:]) // the records' strings go
		s.pending = s.pending[:n]
	}()
	for done < len(s.pending) {
		// The lines that fit before the next rotation, in one write.
		s.buf, s.ends = s.buf[:0], s.ends[:0]
		for i := done; i < len(s.pending); i++ {
			start := len(s.buf)
			s.buf = appendRecord(s.buf, s.cfg.format, &s.pending[i])
			at := s.size + int64(start)
			if at > s.headerSize() && at+int64(len(s.buf)-start) > s.cfg.maxSize {
				s.buf = s.buf[:start]
				break
			}
			s.ends = append(s.ends, len(s.buf))
		}
		if len(s.ends) == 0 {
			if err := s.rotate(); err != nil {
				return done, err
			}
			continue
		}
		n, err := s.f.Write(s.buf)
		whole := sort.SearchInts(s.ends, n+1) // the lines that ended within the n bytes written
		wholeBytes := 0
		if whole > 0 {
			wholeBytes = s.ends[whole-1]
		}
		s.size += int64(wholeBytes)
		done += whole
		if err != nil {
			if n > wholeBytes {
				s.cutBack()
			}
			return done, err
		}
	}
	return done, nil
}

// ready opens the file when it is not open, or no longer the one the
// path names: removed, or moved away by a rotation that did not tell us
// (records written to it would be lost, or land in the rotated file).
func (s *fileSink) ready(cfg *fileSettings) error {
	if s.f != nil && *cfg != s.cfg {
		s.close()
	}
	if s.f != nil {
		fi, err := os.Stat(s.cfg.path)
		if err == nil && os.SameFile(fi, s.info) {
			s.size = fi.Size() // truncated by a copytruncate rotation
			return nil
		}
		s.close()
	}
	s.cfg = *cfg
	return s.open()
}

// cutBack truncates the file to its last whole line after a write cut
// short inside a line. When that fails the file is closed: open cuts the
// half line before anything is appended.
func (s *fileSink) cutBack() {
	if err := s.f.Truncate(s.size); err != nil {
		s.close()
	}
}

// open opens the file for appending; a new (or empty) CSV file starts
// with the header line.
func (s *fileSink) open() error {
	f, err := os.OpenFile(s.cfg.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	size := fi.Size()
	if size > 0 {
		if size, err = cutHalfLine(f, size); err != nil {
			f.Close()
			return err
		}
		if size != fi.Size() && s.log != nil {
			s.log.Warn("acc: the file ended with half a line (a write cut short, or a crash); cut back to its last whole line",
				"file", s.cfg.path, "bytes", fi.Size()-size)
		}
	}
	if size == 0 && s.cfg.format == "csv" {
		if _, err := f.Write([]byte(csvHeaderLine)); err != nil {
			f.Truncate(0)
			f.Close()
			return err
		}
		size = int64(len(csvHeaderLine))
	}
	s.f, s.info, s.size = f, fi, size
	return nil
}

// cutHalfLine truncates f, size bytes long, after its last newline when
// it does not end with one, and returns its size.
func cutHalfLine(f *os.File, size int64) (int64, error) {
	var chunk [4096]byte
	end := size
	for end > 0 {
		start := max(0, end-int64(len(chunk)))
		b := chunk[:end-start]
		if _, err := f.ReadAt(b, start); err != nil && !errors.Is(err, io.EOF) {
			return 0, err
		}
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			end = start + int64(i) + 1
			break
		}
		end = start
	}
	if end == size {
		return size, nil
	}
	return end, f.Truncate(end)
}

// headerSize is what an empty file holds: the CSV header.
func (s *fileSink) headerSize() int64 {
	if s.cfg.format == "csv" {
		return int64(len(csvHeaderLine))
	}
	return 0
}

// rotate closes the file, shifts path.1 ... path.<keep-1> up by one
// (path.<keep> is overwritten), renames the file path.1 (removes it with
// keep 0) and opens a new one.
func (s *fileSink) rotate() error {
	s.close()
	p := s.cfg.path
	if s.cfg.keep == 0 {
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return err
		}
		return s.open()
	}
	for i := s.cfg.keep - 1; i >= 1; i-- {
		err := os.Rename(p+"."+strconv.Itoa(i), p+"."+strconv.Itoa(i+1))
		if err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	if err := os.Rename(p, p+".1"); err != nil {
		return err
	}
	return s.open()
}

func (s *fileSink) close() {
	if s.f == nil {
		return
	}
	s.f.Close()
	s.f, s.info = nil, nil
}
