using System.Diagnostics;
using System.Globalization;
using OnnxOutlierTools.Calibration;
using Spectre.Console;

namespace OnnxOutlierTools.Cli.Analyze;

/// <summary>Shows calibration progress: a Spectre.Console progress bar with tokens/s when stderr is a terminal, plain
/// lines (at most one every two seconds, and the last) when it is redirected or captured.</summary>
public static class CalibrationProgressDisplay
{
    /// <param name="verb">What the bar says is happening ("calibrating", "evaluating").</param>
    public static T Run<T>(TextWriter stderr, Func<IProgress<CalibrationProgress>, T> work, string verb = "calibrating")
    {
        bool terminal = ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected;
        if (!terminal) return work(new PlainLines(stderr, verb));
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        T result = default!;
        console.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn(), new SpinnerColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(verb, autoStart: true, maxValue: 1);
                result = work(new Progress(p =>
                {
                    task.MaxValue = Math.Max(1, p.TokensTotal);
                    task.Value = p.TokensDone;
                    task.Description = string.Create(CultureInfo.InvariantCulture, $"{verb} {p.TokensDone:N0}/{p.TokensTotal:N0} tokens, {p.TokensPerSecond:N0} tokens/s");
                }));
            });
        return result;
    }

    /// <summary>Synchronous (the runner reports from its own thread; System.Progress would post to the thread pool).</summary>
    private sealed class Progress(Action<CalibrationProgress> report) : IProgress<CalibrationProgress>
    {
        public void Report(CalibrationProgress value) => report(value);
    }

    private sealed class PlainLines(TextWriter stderr, string verb) : IProgress<CalibrationProgress>
    {
        private readonly Stopwatch _sinceLast = Stopwatch.StartNew();

        public void Report(CalibrationProgress p)
        {
            bool last = p.TokensDone >= p.TokensTotal;
            if (!last && _sinceLast.Elapsed < TimeSpan.FromSeconds(2)) return;
            _sinceLast.Restart();
            stderr.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"{verb}: {p.TokensDone:N0}/{p.TokensTotal:N0} tokens ({100.0 * p.TokensDone / Math.Max(1, p.TokensTotal):F0}%), {p.WindowsDone}/{p.WindowsTotal} windows, {p.TokensPerSecond:N0} tokens/s"));
        }
    }
}
