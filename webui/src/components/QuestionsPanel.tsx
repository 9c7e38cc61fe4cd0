// Open human-input questions of a run, each with a form to answer it.

import { useState } from "react";
import { answerQuestion, type Question } from "../api";
import { ErrorBox } from "./ErrorBox";

function QuestionForm({ runId, question, onAnswered }: { runId: string; question: Question; onAnswered: () => void }) {
  const [answer, setAnswer] = useState(question.default ?? "");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const id = `answer-${question.question_id}`;
  const options = Array.isArray(question.options) ? question.options : [];

  async function submit(value: string) {
    setBusy(true);
    setError(null);
    try {
      await answerQuestion(runId, question.question_id, value);
      onAnswered();
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  }

  return (
    <form
      className="question card"
      data-testid="question"
      data-question-id={question.question_id}
      onSubmit={(e) => {
        e.preventDefault();
        void submit(answer);
      }}
    >
      <label htmlFor={id} className="question-prompt">
        {question.prompt || "The plan asks for input"}
      </label>
      {question.flow_index && <p className="muted small">Step {question.flow_index}</p>}
      {options.length > 0 ? (
        <div className="options" role="group" aria-label="Choices">
          {options.map((option) => (
            <button key={option} type="button" disabled={busy} onClick={() => void submit(option)}>
              {option}
            </button>
          ))}
        </div>
      ) : (
        <>
          <textarea id={id} name="answer" rows={3} value={answer} onChange={(e) => setAnswer(e.target.value)} />
          <div className="actions">
            <button type="submit" className="primary" disabled={busy}>
              {busy ? "Sending…" : "Answer"}
            </button>
          </div>
        </>
      )}
      <ErrorBox error={error} title="Answer not accepted" />
    </form>
  );
}

export function QuestionsPanel({ runId, questions, onAnswered }: { runId: string; questions: Question[]; onAnswered: () => void }) {
  if (questions.length === 0) return null;
  return (
    <section className="panel questions" aria-labelledby="questions-title">
      <h2 id="questions-title">The run is waiting for you</h2>
      {questions.map((q) => (
        <QuestionForm key={q.question_id} runId={runId} question={q} onAnswered={onAnswered} />
      ))}
    </section>
  );
}
