using System.CommandLine;
using System.CommandLine.Invocation;
using OnnxOutlierTools.Cli.Commands;

namespace OnnxOutlierTools.Cli;

/// <summary>The <c>onnx-outliers</c> command line. Exit codes: 0 success, 1 internal error,
/// 2 bad input or bad usage (one <c>error: ...</c> line on stderr), 3 structure not recognized (<c>inspect --layers</c>).</summary>
public static class Program
{
    public static int Main(string[] args)
    {
        if (ArgumentEncoding.Check(args, ArgumentEncoding.ReadRaw()) is { } problem)
        {
            Console.Error.WriteLine("error: " + problem);
            return ErrorHandler.BadInput;
        }
        return Run(args, Console.Out, Console.Error);
    }

    /// <summary>Runs the CLI in-process with the given output streams (what <see cref="Main"/> does
    /// with the console), returning the exit code.</summary>
    public static int Run(string[] args, TextWriter stdout, TextWriter stderr)
    {
        ArgumentNullException.ThrowIfNull(args);
        // The bare name is how a newcomer starts: show the help, not an error.
        if (args.Length == 0) args = ["--help"];
        var context = new CliContext(stdout, stderr);
        var root = BuildRootCommand(context);
        try
        {
            ParseResult parseResult = root.Parse(args);
            if (parseResult.Action is ParseErrorAction) return ErrorHandler.ReportUsage(parseResult, stderr);
            return parseResult.Invoke(new InvocationConfiguration { Output = stdout, Error = stderr, EnableDefaultExceptionHandler = false });
        }
        catch (Exception ex)
        {
            // The command actions report their own errors; this catches failures around them
            // (the parser itself included), so even those end as one line and an exit code.
            return ErrorHandler.Report(ex, args.Contains(context.Verbose.Name, StringComparer.Ordinal), stderr);
        }
        finally
        {
            stdout.Flush();
            stderr.Flush();
        }
    }

    public static RootCommand BuildRootCommand(CliContext context)
    {
        var root = new RootCommand(
            "Inspect, probe, mitigate and quantize activation outliers in ONNX LLM models.\n" +
            "Exit codes: 0 success, 1 internal error, 2 bad input or usage, 3 structure not recognized, or (mitigate) a rewrite meant to be exact that is not.");
        root.Options.Add(context.Verbose);
        root.Subcommands.Add(InspectCommand.Create(context));
        root.Subcommands.Add(ConvertCommand.Create(context));
        root.Subcommands.Add(AnalyzeCommand.Create(context));
        root.Subcommands.Add(ImportLlama2cCommand.Create(context));
        root.Subcommands.Add(ProbeCommand.Create(context));
        root.Subcommands.Add(MitigateCommand.Create(context));
        root.Subcommands.Add(QuantizeCommand.Create(context));
        root.Subcommands.Add(EvalCommand.Create(context));
        root.Subcommands.Add(RunCommand.Create(context));
        return root;
    }
}
