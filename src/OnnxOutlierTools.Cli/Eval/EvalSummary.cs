using System.Globalization;
using OnnxOutlierTools.Evaluation;
using OnnxOutlierTools.Text;

namespace OnnxOutlierTools.Cli.Eval;

/// <summary>What eval prints: the settings in one line, then a table with a column for the model and one for the reference
/// (perplexity, mean NLL, scored tokens; KL, top-1; cosine for encoders; latency). Plain text, names escaped.</summary>
public static class EvalSummary
{
    public static void Write(TextWriter o, EvalResult r)
    {
        var s = r.Settings;
        string prefix = s.WindowPrefix.Count == 0 ? "none" : $"[{string.Join(",", s.WindowPrefix)}] ({s.PrefixSource})";
        o.WriteLine(Printable.Escape(I($"{r.Windows.Count} window(s) of {s.Window} positions{(s.Stride is int st ? $", stride {st}" : "")}, prefix {prefix}, bos {s.BosResolved}; ") +
            I($"{r.Windows.ScoredTokens:N0} scored of {r.Windows.StreamTokens:N0} tokens ({r.Windows.DroppedTailTokens:N0} dropped after the last window); device {r.Model.Device}")));
        var rows = new List<(string Metric, string Model, string Reference)>();
        bool hasReference = r.Reference is not null;
        if (r.Perplexity is { } p)
        {
            rows.Add(("perplexity", I($"{p.Model.Perplexity:F4}"), p.Reference is { } q ? I($"{q.Perplexity:F4}") : ""));
            rows.Add(("mean NLL (nats)", I($"{p.Model.MeanNll:F6}"), p.Reference is { } q2 ? I($"{q2.MeanNll:F6}") : ""));
            if (p.Model.NonFinitePositions > 0 || p.Reference?.NonFinitePositions > 0)
                rows.Add(("non-finite positions", I($"{p.Model.NonFinitePositions}"), p.Reference is { } q3 ? I($"{q3.NonFinitePositions}") : ""));
        }
        if (r.Divergence is { } d)
        {
            rows.Add(("KL(ref || model) mean", I($"{d.MeanKl:G4}"), ""));
            rows.Add(("KL max", I($"{d.MaxKl:G4} (window {d.MaxKlWindow}, token {d.MaxKlPosition})"), ""));
            rows.Add(("top-1 agreement", I($"{d.Top1Agreement:P2}"), ""));
        }
        if (r.Embedding is { } e)
        {
            rows.Add(("token cosine mean / min", I($"{e.MeanTokenCosine:F6} / {e.MinTokenCosine:F6}"), ""));
            rows.Add(("pooled cosine mean / min", I($"{e.MeanPooledCosine:F6} / {e.MinPooledCosine:F6}"), ""));
        }
        if (r.Latency is { } l)
        {
            rows.Add(($"prompt latency ({l.Model.PromptTokens} tokens)", I($"{l.Model.PromptMs:F2} ms"), l.Reference is { } lr ? I($"{lr.PromptMs:F2} ms") : ""));
            rows.Add(("prompt tokens/s", I($"{l.Model.PromptTokensPerSecond:N0}"), l.Reference is { } lr2 ? I($"{lr2.PromptTokensPerSecond:N0}") : ""));
            if (l.Model.DecodeMsPerToken is double ms)
            {
                rows.Add(("decode latency per token", I($"{ms:F3} ms"), l.Reference?.DecodeMsPerToken is double rms ? I($"{rms:F3} ms") : ""));
                rows.Add(("decode tokens/s", I($"{l.Model.DecodeTokensPerSecond:N0}"), l.Reference?.DecodeTokensPerSecond is double rt ? I($"{rt:N0}") : ""));
            }
        }
        int w0 = Math.Max(6, rows.Max(x => x.Metric.Length)), w1 = Math.Max(5, rows.Max(x => x.Model.Length));
        o.WriteLine($"{"metric".PadRight(w0)}  {"model".PadRight(w1)}{(hasReference ? "  reference" : "")}".TrimEnd());
        foreach (var (metric, model, reference) in rows)
            o.WriteLine($"{metric.PadRight(w0)}  {model.PadRight(w1)}{(hasReference ? "  " + reference : "")}".TrimEnd());
        foreach (string note in r.Notes) o.WriteLine(Printable.Escape("note: " + note));
    }

    private static string I(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
